"""Reading the text of a page image with tesseract: turned upright first, and how sure tesseract was.

Used for image files (each frame of a TIFF a page) and for PDF pages without a text layer (rendered
with pdfium at `DPI`). Per page: tesseract's orientation detection (OSD, Debian's tesseract-ocr-osd)
says whether the page lies on its side or upside down, and the image is turned before it is read
when OSD is sure enough (`MIN_ORIENTATION_CONFIDENCE`); then one tesseract pass gives the words and
their confidences. The page's text is partitioned into elements by unstructured's text partitioner,
as unstructured's own `ocr_only` strategy does; each element carries the page's `OcrRead`, which
lands in `texts.page_spans` (`ocr_confidence`, `ocr_rotated`) and `documents.ocr_confidence`.
Nothing is downloaded: tesseract's language data comes from the system's packages.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import DocumentError, Reason

if TYPE_CHECKING:
    from PIL.Image import Image

DPI = 200  # as unstructured renders PDF pages for OCR
MIN_ORIENTATION_CONFIDENCE = 1.5  # OSD's own confidence; below it the page is read as it lies
OCR_CODE_VERSION = "2"  # bumped when how a page is read changes (it is part of the parser version)


@dataclass(frozen=True)
class OcrRead:
    """How one page's text was read: tesseract's mean word confidence (0-100), and the degrees the
    page image was turned clockwise before it was read (0, 90, 180 or 270)."""

    confidence: float
    rotated: int


def image_pages(data: bytes) -> list[Image]:
    """The pages of an image file (a multi-page TIFF has several)."""
    from PIL import Image as Images
    from PIL import ImageSequence, UnidentifiedImageError

    try:
        image = Images.open(io.BytesIO(data))
        return [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DocumentError(Reason.CORRUPT, f"not a readable image: {exc}") from None


def pdf_page_image(data: bytes, index: int) -> Image:
    """Page `index` (0-based) of a PDF, rendered for OCR."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
        try:
            image: Image = pdf[index].render(scale=DPI / 72).to_pil().convert("RGB")
            return image
        finally:
            pdf.close()
    except pdfium.PdfiumError as exc:
        raise DocumentError(Reason.CORRUPT, f"page {index + 1} cannot be rendered for OCR: {exc}") from None


def upright(image: Image) -> tuple[Image, int]:
    """The image turned upright where tesseract's orientation detection is sure, and by how much."""
    import unstructured_pytesseract as tesseract

    try:
        found = tesseract.image_to_osd(image, output_type=tesseract.Output.DICT)
    except tesseract.TesseractError:  # too few characters to tell: read it as it lies
        return image, 0
    rotate = int(found.get("rotate", 0)) % 360
    if rotate == 0 or float(found.get("orientation_conf", 0.0)) < MIN_ORIENTATION_CONFIDENCE:
        return image, 0
    return image.rotate(-rotate, expand=True), rotate


def read_page(image: Image, languages: tuple[str, ...]) -> tuple[str, OcrRead]:
    """The page's text (lines in reading order, paragraphs apart) and how it was read."""
    import unstructured_pytesseract as tesseract

    turned, rotated = upright(image)
    data = tesseract.image_to_data(turned, lang="+".join(languages) or "eng", output_type=tesseract.Output.DICT)
    lines: dict[tuple[int, int, int], list[str]] = {}
    confidences: list[float] = []
    for block, paragraph, line, word, confidence in zip(
        data["block_num"], data["par_num"], data["line_num"], data["text"], data["conf"], strict=True
    ):
        if not str(word).strip():
            continue
        lines.setdefault((block, paragraph, line), []).append(str(word))
        if float(confidence) >= 0:
            confidences.append(float(confidence))
    paragraphs: dict[tuple[int, int], list[str]] = {}
    for (block, paragraph, _), words in lines.items():
        paragraphs.setdefault((block, paragraph), []).append(" ".join(words))
    text = "\n\n".join("\n".join(paragraph) for paragraph in paragraphs.values())
    confidence = round(sum(confidences) / len(confidences), 1) if confidences else 0.0
    return text, OcrRead(confidence=confidence, rotated=rotated)


def ocr_elements(image: Image, languages: tuple[str, ...], page: int) -> list[tuple[Any, OcrRead]]:
    """unstructured's elements of one page image's text, each with how the page was read."""
    from unstructured.partition.text import partition_text

    text, read = read_page(image, languages)
    if not text.strip():
        return []
    elements = [e for e in partition_text(text=text, languages=list(languages) or ["eng"]) if (e.text or "").strip()]
    for element in elements:
        element.metadata.page_number = page
    return [(element, read) for element in elements]
