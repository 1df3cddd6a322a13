"""Documents unstructured cannot read as they are, converted to .docx with LibreOffice first.

RTF and OpenDocument text (which unstructured would hand to pandoc, not installed) and Strict OOXML
Word files (ISO/IEC 29500 Strict namespaces, which python-docx does not know) are converted by
LibreOffice Writer (`soffice --headless --convert-to docx`), then partitioned as Word files. The
conversion runs in the parsing process, under its time and memory limits, with the process's own
LibreOffice profile (pipeline/parse/workers.py gives each process its own home). The document keeps
its own type in every record; only the parser sees the .docx.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import zipfile
from functools import cache
from pathlib import Path

from pipeline.core.errors import DocumentError, Reason

# Types converted to .docx before partitioning, with the LibreOffice component that reads them.
TO_DOCX = {"rtf": "libswlo.so", "odt": "libswlo.so"}
WRITER = "libswlo.so"
STRICT_NAMESPACE = b"http://purl.oclc.org/ooxml/"  # every Strict OOXML part names its schemas under this
CONVERT_TIMEOUT_S = 240.0  # below the parsing processes' own limit (parsing.timeout_s, 300 s by default)


@cache
def libreoffice_has(component: str) -> bool:
    """Whether `soffice` is installed with the library of `component` beside it (Writer, Impress, Calc)."""
    soffice = shutil.which("soffice")
    return soffice is not None and (Path(soffice).resolve().parent / component).exists()


def is_strict_ooxml(data: bytes) -> bool:
    """A .docx (or any OOXML zip) whose main parts use the Strict namespaces."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            relations = archive.read("_rels/.rels") if "_rels/.rels" in archive.namelist() else b""
    except (zipfile.BadZipFile, KeyError, OSError):
        return False
    return STRICT_NAMESPACE in relations


def needs_docx_conversion(data: bytes, filetype: str) -> bool:
    return filetype in TO_DOCX or (filetype == "docx" and is_strict_ooxml(data))


def to_docx(data: bytes, filetype: str, timeout_s: float = CONVERT_TIMEOUT_S) -> bytes:
    """The document as a (transitional) .docx, converted by LibreOffice Writer; `DocumentError` if it cannot be."""
    what = "Strict OOXML Word" if filetype == "docx" else filetype.upper()
    if not libreoffice_has(WRITER):
        raise DocumentError(
            Reason.UNSUPPORTED_TYPE,
            f"a {what} file needs LibreOffice Writer to be read (soffice; Debian: libreoffice-writer-nogui)",
            filetype,
        )
    soffice = shutil.which("soffice")
    assert soffice is not None
    with tempfile.TemporaryDirectory(prefix="assay-convert-") as folder:
        source = Path(folder) / f"document.{filetype}"
        source.write_bytes(data)
        out = Path(folder) / "out"
        try:
            done = subprocess.run(
                [soffice, "--headless", "--norestore", "--convert-to", "docx", "--outdir", str(out), str(source)],
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DocumentError(
                Reason.PARSE_TIMEOUT, f"LibreOffice did not convert the {what} file in {timeout_s:.0f} s", filetype
            ) from exc
        converted = out / "document.docx"
        if not converted.exists() or converted.stat().st_size == 0:
            detail = (done.stderr or done.stdout).decode(errors="replace").strip()[-500:]
            raise DocumentError(
                Reason.CORRUPT,
                f"LibreOffice could not read the {what} file" + (f": {detail}" if detail else ""),
                filetype,
            )
        return converted.read_bytes()
