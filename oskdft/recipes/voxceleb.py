"""VoxCeleb -> Kaldi data dirs, from local files only (lhotse's ``prepare_voxceleb`` always
downloads the trial lists, so it is not used).

Input::

    VoxCeleb1/wav/<spk>/<video>/<nnnnn>.wav
    VoxCeleb2/dev/aac/<spk>/<video>/<nnnnn>.m4a   converted once with ffmpeg, or
    <voxceleb2 wav tree>/<spk>/<video>/<nnnnn>.wav already converted (as the original code used)
    <trials dir>/veri_test2.txt, list_test_all2.txt, list_test_hard2.txt   (cleaned O, E, H)

Output, under the recipe's ``data/``:

- ``voxceleb1``: all of VoxCeleb1, the evaluation set, with ``trials_vox1_{O,E,H}``;
- ``voxceleb1_dev``: VoxCeleb1 without the speakers of Vox1-O, for training on VoxCeleb1 only
  (as the authors' later code did);
- ``voxceleb2_dev``: VoxCeleb2 dev, the paper's training set;
- ``musan_music``, ``musan_noise``, ``musan_speech``, ``rirs`` (:mod:`oskdft.recipes.musan`).

Utterance ids are ``<spk>-<video>-<nnnnn>``: they start with the speaker id and are unique,
unlike file names. Trial lines ``1 id10270/x6uYqmx31kE/00001.wav id10270/...`` become
``id10270-x6uYqmx31kE-00001 id10270-... target``.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

from tqdm import tqdm

from oskdft.data.kaldi_dir import (
    Trial,
    read_trials,
    replace_data_dir,
    scan_audio_tree,
    utt_id_from_path,
)
from oskdft.recipes.musan import prepare_musan, prepare_rirs
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, tmp_path_for

# Cleaned lists (the "2" files): name of trials_<name> -> file in the trials dir.
TRIAL_LISTS = {
    "vox1_O": "veri_test2.txt",
    "vox1_E": "list_test_all2.txt",
    "vox1_H": "list_test_hard2.txt",
}
UTT_PATTERN = "*/*/*"  # <spk>/<video>/<nnnnn>


def speaker_of(utt: str) -> str:
    """The speaker of a VoxCeleb utterance id (speaker ids ``idNNNNN`` contain no '-').

    >>> speaker_of("id10270-x6uYq-mx31kE-00001")
    'id10270'
    """
    return utt.split("-", 1)[0]


def prepare_voxceleb(
    output_dir: Pathlike,
    voxceleb1: Pathlike,
    trials_dir: Pathlike,
    voxceleb2: Optional[Pathlike] = None,
    voxceleb2_wav_dir: Optional[Pathlike] = None,
    musan: Optional[Pathlike] = None,
    rirs: Optional[Pathlike] = None,
    num_jobs: int = 4,
) -> List[str]:
    """Write the VoxCeleb recipe's data dirs (see the module docstring) under ``output_dir``.

    :param voxceleb1: the VoxCeleb1 root (holding ``wav/``) or its ``wav/`` tree.
    :param trials_dir: the directory of the cleaned trial lists; missing lists are skipped
        with a warning, but at least one is needed.
    :param voxceleb2: the VoxCeleb2 root (holding ``dev/aac/``); None: no ``voxceleb2_dev``.
    :param voxceleb2_wav_dir: the VoxCeleb2 dev wav tree, read when it exists and written by
        the m4a conversion (default ``<voxceleb2>/dev/wav``).
    :param musan: the MUSAN root; None: no ``musan_*`` sets.
    :param rirs: the RIRS_NOISES root; None: no ``rirs`` set.
    :param num_jobs: parallel ffmpeg processes for the m4a conversion.
    :return: the names of the sets written.
    """
    output_dir = Path(output_dir)
    root1 = Path(voxceleb1) / "wav" if (Path(voxceleb1) / "wav").is_dir() else Path(voxceleb1)
    wav_scp = scan_audio_tree(root1, f"{UTT_PATTERN}.wav")
    utt2spk = {utt: speaker_of(utt) for utt in wav_scp}
    trials = read_voxceleb_trials(trials_dir, wav_scp)
    replace_data_dir(output_dir / "voxceleb1", wav_scp, utt2spk, trials)
    names = ["voxceleb1"]

    if "vox1_O" in trials:
        test_speakers = {speaker_of(utt) for trial in trials["vox1_O"] for utt in trial[:2]}
        dev_scp = {utt: p for utt, p in wav_scp.items() if utt2spk[utt] not in test_speakers}
        replace_data_dir(output_dir / "voxceleb1_dev", dev_scp, {u: utt2spk[u] for u in dev_scp})
        names.append("voxceleb1_dev")
    else:
        logging.warning("no Vox1-O list: voxceleb1_dev (VoxCeleb1 minus its speakers) not made")

    if voxceleb2 is not None or voxceleb2_wav_dir is not None:
        tree = voxceleb2_dev_tree(voxceleb2, voxceleb2_wav_dir, num_jobs)
        wav_scp2 = scan_audio_tree(tree, f"{UTT_PATTERN}.wav")
        replace_data_dir(
            output_dir / "voxceleb2_dev", wav_scp2, {utt: speaker_of(utt) for utt in wav_scp2}
        )
        names.append("voxceleb2_dev")
    if musan is not None:
        names += prepare_musan(musan, output_dir)
    if rirs is not None:
        names += prepare_rirs(rirs, output_dir)
    return names


def read_voxceleb_trials(trials_dir: Pathlike, wav_scp: Dict[str, str]) -> Dict[str, List[Trial]]:
    """The cleaned O/E/H lists found in ``trials_dir``, as trials over ``wav_scp``'s ids."""
    trials = {}
    for name, file_name in TRIAL_LISTS.items():
        path = Path(trials_dir) / file_name
        if path.is_file():
            trials[name] = read_trials(path, wav_scp, voxceleb_ids=utt_id_from_path)
        else:
            logging.warning("%s not found: trials_%s is not made", path, name)
    if not trials:
        raise InputError(
            trials_dir,
            f"none of the trial lists {', '.join(TRIAL_LISTS.values())} is here",
            hint="put the cleaned VoxCeleb1 lists there (nothing is downloaded)",
        )
    return trials


def voxceleb2_dev_tree(
    voxceleb2: Optional[Pathlike], wav_dir: Optional[Pathlike], num_jobs: int = 4
) -> Path:
    """The VoxCeleb2 dev wav tree: m4a files under ``<voxceleb2>/dev/aac`` are converted into
    ``wav_dir`` first (those not converted yet); else an existing wav tree is used,
    ``wav_dir`` or ``dev/aac`` itself when it was converted in place."""
    aac = Path(voxceleb2) / "dev" / "aac" if voxceleb2 is not None else None
    if wav_dir is None:
        assert voxceleb2 is not None, "the caller passes voxceleb2 or wav_dir"
        wav_dir = Path(voxceleb2) / "dev" / "wav"
    wav_dir = Path(wav_dir)
    if aac is not None and next(glob.iglob(str(aac / f"{UTT_PATTERN}.m4a")), None):
        convert_m4a_tree(aac, wav_dir, num_jobs)
        return wav_dir
    for tree in (wav_dir, aac):
        if tree is not None and next(glob.iglob(str(tree / f"{UTT_PATTERN}.wav")), None):
            return tree
    raise InputError(
        aac or wav_dir,
        "no VoxCeleb2 dev audio (<spk>/<video>/<nnnnn>.m4a or .wav) found",
        hint="pass --voxceleb2 <root holding dev/aac> or --voxceleb2-wav-dir <wav tree>",
    )


def convert_m4a_tree(src: Pathlike, dst: Pathlike, num_jobs: int = 4) -> int:
    """Convert ``src/<spk>/<video>/<n>.m4a`` to 16 kHz mono ``dst/<spk>/<video>/<n>.wav`` with
    ffmpeg, ``num_jobs`` at a time. Files already converted are skipped; each new file
    appears under its final name only once complete, so an interrupted run just resumes.

    :return: the number of files converted.
    :raises InputError: when ffmpeg is needed but not installed, or fails on some file.
    """
    src, dst = Path(src), Path(dst)
    todo = []
    for m4a in sorted(glob.glob(str(src / f"{UTT_PATTERN}.m4a"))):
        wav = dst / Path(os.path.relpath(m4a, src)).with_suffix(".wav")
        if not wav.exists():
            todo.append((m4a, wav))
    if not todo:
        return 0
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise InputError(
            src,
            f"{len(todo)} m4a files need converting to wav and ffmpeg is not installed",
            hint="install ffmpeg, or convert the tree elsewhere and pass --voxceleb2-wav-dir",
        )
    logging.info(
        "converting %d m4a files from %s to %s with %d jobs", len(todo), src, dst, num_jobs
    )
    failures = []
    with ThreadPoolExecutor(num_jobs) as pool:
        results = pool.map(lambda item: _convert(ffmpeg, *item), todo)
        for (m4a, _), error in tqdm(
            zip(todo, results, strict=True),
            total=len(todo),
            unit="file",
            disable=len(todo) < 1000,
            mininterval=10,
        ):
            if error is not None:
                failures.append((m4a, error))
    if failures:
        m4a, error = failures[0]
        raise InputError(
            m4a,
            f"ffmpeg failed: {error} ({len(failures)} of {len(todo)} files failed)",
            hint="check these files; a rerun keeps the converted ones and retries the rest",
        )
    return len(todo)


def _convert(ffmpeg: str, m4a: str, wav: Path) -> Optional[str]:
    """Convert one file; return ffmpeg's error message, or None on success."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(wav)  # hidden, so scans skip it; keeps .wav for ffmpeg
    try:
        run = subprocess.run(
            [
                ffmpeg,
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-i",
                m4a,
                "-ac",
                "1",
                "-ar",
                "16000",
                "-c:a",
                "pcm_s16le",
                str(tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if run.returncode != 0:
            message = "; ".join(run.stderr.decode(errors="replace").strip().splitlines())
            return message[-300:] or f"exit status {run.returncode}"
        os.replace(tmp, wav)
        return None
    finally:
        if tmp.exists():
            tmp.unlink()
