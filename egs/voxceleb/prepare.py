#!/usr/bin/env python3
"""Stage 0 of egs/voxceleb: VoxCeleb1/2, MUSAN and RIRS_NOISES -> Kaldi data dirs.

Reads local files only (nothing is downloaded). VoxCeleb2's m4a files are converted once to a
wav tree with ffmpeg (--nj at a time; files already converted are skipped), or a tree
converted beforehand is given with --voxceleb2-wav-dir.

Inputs:  --voxceleb1 ROOT (wav/<spk>/<video>/<n>.wav), --trials-dir DIR (veri_test2.txt,
         list_test_all2.txt, list_test_hard2.txt), optional --voxceleb2 ROOT (dev/aac/...),
         --voxceleb2-wav-dir DIR, --musan ROOT, --rirs ROOT
Outputs: DATA_DIR/{voxceleb1,voxceleb1_dev,voxceleb2_dev,musan_music,musan_noise,musan_speech,
         rirs}/ with wav.scp (+ utt2spk, spk2utt; voxceleb1: trials_vox1_{O,E,H})

Usage: egs/voxceleb/prepare.py --voxceleb1 /data/VoxCeleb1 --voxceleb2 /data/VoxCeleb2 \\
           --trials-dir /data/VoxCeleb1/trials --musan /data/musan --rirs /data/RIRS_NOISES data
"""

import argparse
import logging

from oskdft.cli.common import make_parser, run_script
from oskdft.recipes.voxceleb import prepare_voxceleb
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--voxceleb1", required=True, help="VoxCeleb1 root (holding wav/)")
    parser.add_argument("--trials-dir", required=True, help="directory of the cleaned trial lists")
    parser.add_argument("--voxceleb2", default=None, help="VoxCeleb2 root (holding dev/aac/)")
    parser.add_argument(
        "--voxceleb2-wav-dir",
        default=None,
        help="VoxCeleb2 dev as wav: read if it exists, else written by the m4a "
        "conversion (default: VOXCELEB2/dev/wav)",
    )
    parser.add_argument("--musan", default=None, help="MUSAN root (music/ noise/ speech/)")
    parser.add_argument("--rirs", default=None, help="RIRS_NOISES root (simulated_rirs/)")
    parser.add_argument("--nj", type=int, default=8, help="parallel ffmpeg conversions")
    parser.add_argument("data_dir", help="where the data dirs are written")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    prepare_voxceleb(
        output_dir=args.data_dir,
        voxceleb1=args.voxceleb1,
        trials_dir=args.trials_dir,
        voxceleb2=args.voxceleb2,
        voxceleb2_wav_dir=args.voxceleb2_wav_dir,
        musan=args.musan,
        rirs=args.rirs,
        num_jobs=args.nj,
    )


if __name__ == "__main__":
    run_script(main)
