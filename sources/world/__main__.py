"""The synthetic world's two commands: synth writes a dataset, show draws any recording (of any source) to a PNG.

    python -m sources.world synth --out data/synthetic [--recordings 48] [--minutes 2] [--seed 0] [--overwrite]
    python -m sources.world show data/synthetic/syn001_kitchen --out docs/preview.png [--width 1200 --height 800]
"""
import argparse
import shutil
import time
from pathlib import Path

import data
from sources.world import SynthConfig, synthesize


def synth(args):
    data.lock_out(args.out)  # one synth per --out at a time (data.command releases it)
    existing = [p for p in args.out.iterdir() if (p / "meta.json").is_file()] if args.out.is_dir() else []
    if existing and not args.overwrite:
        raise data.DataError(f"--out {args.out}: already holds {len(existing)} recordings; a dataset must come from "
                             f"one run of synth (pass --overwrite to replace them)")
    for p in existing + [args.out / ".cache"]:
        shutil.rmtree(p, ignore_errors=True)
    start = time.perf_counter()
    paths = synthesize(args.out, data.config_from(SynthConfig, args))
    size = sum(p.stat().st_size for d in paths for p in d.iterdir())
    print(f"wrote {len(paths)} recordings to {args.out} ({size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")


def show(args):
    from sources.world.preview import draw_recording  # (here: it imports evaluate.py's IMU plot, and torch with it)
    data.need(not args.out.is_dir(), f"--out {args.out}: is a directory, not a file to write")
    img = draw_recording(data.read_recording(args.recording), args.width, args.height, args.frames)
    data.atomic_write(args.out, lambda tmp: img.save(tmp, format="PNG"))
    print(f"wrote {args.out} ({img.width}x{img.height})")


@data.command
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sources.world", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("synth", help="write a synthetic dataset (same seed -> same bytes)")
    p.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace the recordings already in --out")
    data.add_flags(p, SynthConfig)
    p.set_defaults(run=synth)
    p = sub.add_parser("show", help="draw one recording (IMU, activities, frames, narrations) to a PNG")
    p.add_argument("recording", type=Path, help="recording directory")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--width", type=data.number(int, at_least=1), default=1200, help="default: %(default)s")
    p.add_argument("--height", type=data.number(int, at_least=1), default=800, help="default: %(default)s")
    p.add_argument("--frames", type=data.number(int, at_least=1), default=10, help="frames in the strip "
                   "(default: %(default)s)")
    p.set_defaults(run=show)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
