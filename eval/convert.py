"""Convert a released checkpoint of another method into the safetensors + JSON folder eval.run reads like ours.

`python -m eval.convert FILE --model NAME --out DIR`
FILE is read only through torch.load(weights_only=True) (eval.models.weights: a pickle that would build anything but
tensors and plain containers is refused before any of it runs), unwrapped, stripped of `module.` and loaded strictly
into NAME's network (eval.models); DIR then holds model.safetensors (that network's state dict) and model.json
(format, model, the source file's path and SHA-256, the number of tensors). DIR is written aside and renamed into
place (pipeline.common.outputs); it may hold only these two files. `eval.run --model NAME --ckpt DIR` reads it.
"""
from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import save_file

from eval.models import FOREIGN, foreign_network
from eval.models.weights import META, WEIGHTS, load_strict, read_pth
from pipeline.common.atomic import atomic_write_json
from pipeline.common.cli import Parser, run_cli
from pipeline.common.integrity import sha256_file
from pipeline.common.outputs import replacing


def convert(src: str | Path, model: str, out: str | Path) -> Path:
    net = foreign_network(model)
    src = Path(src)
    load_strict(net, read_pth(src), src)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    with replacing(out, (WEIGHTS, META)) as stage:
        save_file(state, str(stage / WEIGHTS))
        atomic_write_json(stage / META, {"format": 1, "model": model, "source": os.path.abspath(src),
                                         "source_sha256": sha256_file(src), "tensors": len(state)})
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m eval.convert", description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="released checkpoint (.pth, .pth.tar)")
    ap.add_argument("--model", required=True, help=f"model family: {', '.join(FOREIGN)}")
    ap.add_argument("--out", required=True, help="folder to write (model.safetensors + model.json)")
    args = ap.parse_args(argv)
    out = convert(args.file, args.model, args.out)
    print(f"wrote {out / WEIGHTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
