"""The licence notices that travel with a model's weights: an image (or any copy) that carries the weights carries
these files too, because every licence in the catalog asks for it.

- Apache-2.0 (SmolLM2, Qwen3): give recipients a copy of the licence (section 4a): the full text, LICENSE.
- MIT (Phi, BitNet): the copyright notice and the permission notice in all copies: LICENSE.
- Gemma Terms of Use (Gemma 3): a "Notice" text file with the sentence the terms prescribe (section 3.1), the use
  restrictions passed on, and a copy of the terms to every recipient. The course does not ship the terms' text:
  NOTICE says where it is and that it must be added before the image is published.
- Llama 3.2 Community License: "Built with Llama", the notice sentence it prescribes, a copy of the agreement
  (same as Gemma: NOTICE says where).

    files = licence_files("gemma-3-270m")          # {"NOTICE": "...", } (and "LICENSE" where the text is shipped)
    python -m slmlab.models.licences MODEL DIR      # writes them (what the ONNX service's image build runs)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.models.catalog import ModelSpec, get

TEXTS = Path(__file__).with_name("licence_texts")
HOLDERS = {"microsoft": "Microsoft Corporation"}  # the copyright line of an MIT licence, by hub organisation


@dataclass(frozen=True)
class Licence:
    """One licence of the catalog: its SPDX id (LicenseRef-… when it has none), where its terms are, the text the
    course ships (a file in licence_texts/, or ""), and the notice sentences the licence itself prescribes."""

    name: str
    spdx: str
    url: str
    text_file: str = ""
    required_notice: tuple[str, ...] = ()
    obligations: str = ""  # what a redistributor must do, in a sentence


LICENCES = {licence.name: licence for licence in (
    Licence("Apache-2.0", "Apache-2.0", "https://www.apache.org/licenses/LICENSE-2.0", "Apache-2.0.txt",
            obligations="Recipients get a copy of the licence (LICENSE, beside this file)."),
    Licence("MIT", "MIT", "https://opensource.org/license/mit", "MIT.txt",
            obligations="The copyright and permission notice (LICENSE, beside this file) stay with every copy."),
    Licence("Gemma Terms of Use", "LicenseRef-Gemma-Terms-of-Use", "https://ai.google.dev/gemma/terms",
            required_notice=("Gemma is provided under and subject to the Gemma Terms of Use found at "
                             "ai.google.dev/gemma/terms",),
            obligations="Whoever receives this image receives Gemma: give them a copy of the Gemma Terms of Use "
                        "and pass on the use restrictions of the Gemma Prohibited Use Policy "
                        "(https://ai.google.dev/gemma/prohibited_use_policy). The course does not ship the terms' "
                        "text: download it from the address above and add it here as LICENSE before you publish "
                        "this image."),
    Licence("Llama 3.2 Community License", "LicenseRef-Llama-3.2-Community-License",
            "https://www.llama.com/llama3_2/license/",
            required_notice=("Built with Llama",
                             "Llama 3.2 is licensed under the Llama 3.2 Community License, Copyright © Meta "
                             "Platforms, Inc. All Rights Reserved."),
            obligations="Whoever receives this image receives Llama 3.2: give them a copy of the agreement and "
                        "follow its Acceptable Use Policy (https://www.llama.com/llama3_2/use-policy). The course "
                        "does not ship the agreement's text: add it here as LICENSE before you publish this image."),
)}


def licence_of(model: ModelSpec | str) -> Licence:
    """The licence of a catalog model (a SlmLabError when the course has no entry for it)."""
    spec = get(model) if isinstance(model, str) else model
    if spec.license not in LICENCES:
        raise SlmLabError(f"{spec.key}'s licence {spec.license!r} has no entry in slmlab.models.licences.",
                          "Add it to LICENCES (its SPDX id, its terms' address, the notice it requires).")
    return LICENCES[spec.license]


def notice_text(model: ModelSpec | str, what: str = "") -> str:
    """The NOTICE file for a copy of the model's weights (`what`: which file, e.g. "the Q4_K_M GGUF")."""
    spec = get(model) if isinstance(model, str) else model
    licence = licence_of(spec)
    lines = [f"Model weights: {spec.family} {spec.key}" + (f" ({what})" if what else ""),
             f"Published by: https://huggingface.co/{spec.hub_id}",
             f"Licence: {licence.name} (SPDX: {licence.spdx}), {licence.url}", ""]
    lines += [*licence.required_notice, ""] if licence.required_notice else []
    lines += [licence.obligations, ""]
    return "\n".join(lines)


def licence_files(model: ModelSpec | str, what: str = "") -> dict[str, str]:
    """NOTICE, and LICENSE where the course ships the licence's text: file name -> text."""
    spec = get(model) if isinstance(model, str) else model
    licence = licence_of(spec)
    files = {"NOTICE": notice_text(spec, what)}
    if licence.text_file:
        holder = HOLDERS.get(spec.hub_id.split("/")[0].lower(), spec.hub_id.split("/")[0])
        files["LICENSE"] = (TEXTS / licence.text_file).read_text(encoding="utf-8").replace("{holder}", holder)
    return files


def write_licence_files(model: ModelSpec | str, folder: str | Path, what: str = "") -> list[Path]:
    """Write NOTICE (and LICENSE) into `folder` (created); returns the paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in licence_files(model, what).items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    """`python -m slmlab.models.licences MODEL DIR [WHAT]`: write the model's licence files into DIR."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print("usage: python -m slmlab.models.licences MODEL DIR [WHAT]", file=sys.stderr)
        return 2
    for path in write_licence_files(args[0], args[1], args[2] if len(args) == 3 else ""):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
