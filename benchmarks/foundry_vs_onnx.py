"""Foundry Local vs ONNX Runtime GenAI on the same folder: load time, TTFT and decode speed, one process.

Both engines run the same ONNX Runtime GenAI int8 folder (slmlab.convert.gguf_to_onnx, cached) on the CPU,
greedily, on the same prompt, alternating order every repeat after a warm-up. Foundry's chat session keeps one KV
cache sized for the whole context (8192 tokens here); `--context-length` shrinks it (slmlab.foundry.local.context_view).

    decode tok/s = (completion tokens - 1) / seconds from the first to the last token (Generation.decode_tok_s)

Run: .venv/bin/python benchmarks/foundry_vs_onnx.py [--repeats 5] [--max-tokens 128] [--context-length 2048]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from slmlab.backends.foundry import FoundryBackend
from slmlab.backends.onnx import OrtGenAIBackend
from slmlab.convert.gguf_to_onnx import ort_genai_folder

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper who finds a message in a bottle."}]


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print medians and the foundry / onnx ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--context-length", type=int, default=None)
    args = parser.parse_args(argv)

    folder = ort_genai_folder(args.model, args.precision)
    backends = {"onnx": OrtGenAIBackend(folder), "foundry": FoundryBackend(folder, context_length=args.context_length)}
    print(f"folder: {folder}")
    for name, backend in backends.items():
        print(f"{name:8s} load {backend.load_s:.2f} s")
        backend.chat(PROMPT, max_tokens=8)  # warm-up
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in backends}
    texts: dict[str, str] = {}
    for i in range(args.repeats):
        order = list(backends) if i % 2 == 0 else list(reversed(backends))
        for name in order:
            gen = backends[name].chat(PROMPT, max_tokens=args.max_tokens)
            figures[name].append((gen.timings.ttft_s, gen.decode_tok_s or 0.0))
            texts[name] = gen.text
    medians = {name: (statistics.median(t for t, _ in f), statistics.median(s for _, s in f))
               for name, f in figures.items()}
    for name, (ttft, speed) in medians.items():
        print(f"{name:8s} TTFT {ttft * 1000:7.1f} ms   decode {speed:6.1f} tok/s   (median of {args.repeats})")
    ratio = medians["foundry"][1] / medians["onnx"][1]
    print(f"foundry / onnx decode speed: {ratio:.2f}   same text: {texts['foundry'] == texts['onnx']}")
    for backend in backends.values():
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
