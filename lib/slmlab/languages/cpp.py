"""C++ against llama.cpp's C API: built with CMake on the course's llama.cpp build, run, compared with the binding.

    build = cmake_build(new_workdir("cpp"))                 # cmake -S … -B …/build -DLLAMA_DIR=… ; cmake --build
    result = run_greedy(build, model_path, "The capital of France is", 16)   # the JSON line greedy.cpp prints
    python_greedy(model_path, "The capital of France is", 16)               # llama-cpp-python, same settings

The build (`slmlab setup llamacpp`) is the llama.cpp commit that the pinned llama-cpp-python vendors, so the
program and the binding run the same code: greedy decoding must give the same tokens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.languages.programs import last_json, run_program
from slmlab.languages.toolchains import toolchain

PROGRAM = "llama-greedy"
BY_HAND = "llama-greedy-by-hand"  # built once the exercise's pick.hpp exists


def cpp_ready(path: str | None = None) -> tuple[bool, str]:
    """(True, what will be used) when g++, cmake and llama.cpp's build are here, else (False, the skip message)."""
    from slmlab.setup.llamacpp import llamacpp_dir

    tools = toolchain("cpp", path)
    if not tools.ok:
        return False, tools.skip_message("the C++ cells")
    try:
        folder = llamacpp_dir()
    except SlmLabError as err:
        return False, f"Skipped the C++ cells: {err.problem} {err.hint}"
    return True, f"{tools.describe()}; llama.cpp build {folder}"


def cmake_build(workdir: str | os.PathLike, llama_dir: str | os.PathLike | None = None, echo: bool = True,
                timeout: float = 600) -> Path:
    """Configure and build the C++ sources in `workdir` with CMake against llama.cpp's build; the build folder."""
    from slmlab.setup.llamacpp import llamacpp_dir

    source = Path(workdir)
    build = source / "build"
    folder = Path(llama_dir) if llama_dir is not None else llamacpp_dir()
    run_program(["cmake", "-S", source, "-B", build, f"-DLLAMA_DIR={folder}"], cwd=source, what="cmake (configure)",
                compiler=True, echo=echo, timeout=timeout)
    run_program(["cmake", "--build", build, "--parallel", "2"], cwd=source, what="cmake --build", compiler=True,
                echo=echo, timeout=timeout)
    return build


def run_greedy(build: str | os.PathLike, model_path: str | os.PathLike, prompt: str, max_tokens: int,
               threads: int | None = None, program: str = PROGRAM, echo: bool = True) -> dict[str, Any]:
    """Run the built program: greedy decoding of `prompt`; its JSON result (tokens, text, tokens/s)."""
    exe = Path(build) / program
    if not exe.exists():
        raise SlmLabError(f"{exe} is not built.", "Run cmake_build(workdir) first (the exercise's target needs "
                                                  "pick.hpp in the folder).")
    cmd: list[str | os.PathLike] = [exe, "-m", model_path, "-p", prompt, "-n", str(max_tokens)]
    if threads:
        cmd += ["-t", str(threads)]
    run = run_program(cmd, cwd=build, what=program, echo=echo, timeout=300)
    return last_json(run.stdout)


def python_greedy(model_path: str | os.PathLike, prompt: str, max_tokens: int, threads: int | None = None
                  ) -> dict[str, Any]:
    """The same greedy decoding through llama-cpp-python (tokenize with BOS and special tokens, argmax each step)."""
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(os.fspath(model_path), n_ctx=512, n_threads=threads, verbose=False)
    try:
        prompt_ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        tokens: list[int] = []
        for token in llm.generate(prompt_ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(vocab, token) or len(tokens) == max_tokens:
                break
            tokens.append(token)
        text = llm.detokenize(tokens).decode("utf-8", errors="replace")
    finally:
        llm.close()
    return {"prompt_tokens": list(prompt_ids), "tokens": tokens, "text": text}
