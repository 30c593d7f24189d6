"""Integrity of a rosbag2 folder before it is played: metadata.yaml, storage files, MCAP CRCs.

MCAP (mcap.dev spec) records three CRC-32s: each Chunk's `uncompressed_crc`, the Data End
record's `data_section_crc` and the Footer's `summary_crc`; 0 means "not recorded". `rosbags`
writes all three as 0 and checks only chunk CRCs, lazily while reading, so `seal_mcap` fills them
in after `ms2_to_bag` writes a bag and `verify_mcap` checks every recorded one before the player
publishes anything. A sqlite3 bag has no checksums, only its reader's own checks.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePath

import yaml

MCAP_MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_CHUNK, OP_DATA_END = 0x01, 0x02, 0x06, 0x0F
FOOTER_BYTES = 1 + 8 + 8 + 8 + 4  # opcode, length, summary_start, summary_offset_start, crc
CRC_BLOCK_BYTES = 1 << 22


class BagFileError(ValueError):
    """A bag folder, its metadata.yaml or one of its storage files is missing or damaged."""


@dataclass(frozen=True)
class McapFooter:
    """Where an mcap file's sections are (byte offsets), and its summary CRC (0 = none)."""

    size: int
    summary_start: int  # 0: no summary section
    footer_start: int
    summary_crc: int

    @property
    def data_end(self) -> int:
        return self.summary_start or self.footer_start

    @property
    def summary_crc_span(self) -> tuple[int, int]:
        """[start, end) of the bytes the summary CRC covers: the summary and summary offset
        sections and the footer up to (not including) the CRC field (MCAP spec, Footer)."""
        return self.summary_start or self.footer_start, self.footer_start + FOOTER_BYTES - 4


def _damaged(path: Path, what: str) -> BagFileError:
    return BagFileError(f"mcap file {path} is damaged: {what}; re-record or re-convert the bag "
                        f"(ms2_to_bag --force), or restore it from a good copy")


def read_mcap_footer(stream, path: Path) -> McapFooter:
    """Check an open mcap file's magics and footer record (BagFileError naming `path`)."""
    size = stream.seek(0, 2)
    stream.seek(0)
    head = stream.read(len(MCAP_MAGIC))
    if size == 0:
        raise BagFileError(f"mcap file {path} is empty (0 bytes): a recording or copy that never "
                           f"got going; re-create the bag")
    if head != MCAP_MAGIC:
        raise BagFileError(f"mcap file {path} is not an MCAP file: it starts with {head!r}, not "
                           f"the MCAP magic {MCAP_MAGIC!r}; check metadata.yaml's storage files")
    footer_start = size - len(MCAP_MAGIC) - FOOTER_BYTES
    stream.seek(max(footer_start, 0))
    tail = stream.read()
    if footer_start < len(MCAP_MAGIC) or tail[-len(MCAP_MAGIC):] != MCAP_MAGIC:
        raise BagFileError(f"mcap file {path} is truncated: {size} bytes with no MCAP footer at "
                           f"the end (an interrupted recording or copy); re-create or re-copy it")
    op, length, summary_start, _, crc = struct.unpack("<BQQQI", tail[:FOOTER_BYTES])
    if op != OP_FOOTER or length != FOOTER_BYTES - 9 or not (
            summary_start == 0 or len(MCAP_MAGIC) <= summary_start <= footer_start):
        raise _damaged(path, f"the footer at byte {footer_start} is not a valid MCAP footer")
    return McapFooter(size, summary_start, footer_start, crc)


def _data_records(stream, path: Path, footer: McapFooter):
    """Yield (offset, record bytes with opcode and length) of the Header and the data section
    records, through the Data End record; a record that does not fit is damage."""
    offset = len(MCAP_MAGIC)
    stream.seek(offset)
    while offset < footer.data_end:
        head = stream.read(9)
        op, length = struct.unpack("<BQ", head) if len(head) == 9 else (0, 0)
        end = offset + 9 + length
        if op == 0 or end > footer.data_end or (offset == len(MCAP_MAGIC)) != (op == OP_HEADER):
            raise _damaged(path, f"the record at byte {offset} (opcode 0x{op:02x}, {length} bytes) "
                                 f"does not fit the file's record layout")
        yield offset, head + stream.read(length)
        if op == OP_DATA_END:
            return
        offset = end


def _chunk_crc(path: Path, offset: int, record: bytes) -> tuple[int, int]:
    """(stored uncompressed_crc, CRC-32 computed over the uncompressed records) of a Chunk."""
    from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

    try:
        _, _, uncompressed_size, stored, name_len = struct.unpack_from("<QQQII", record, 9)
        compression = record[41:41 + name_len].decode()
        (data_len,) = struct.unpack_from("<Q", record, 41 + name_len)
        data = memoryview(record)[49 + name_len:49 + name_len + data_len]
        if len(data) != data_len:
            raise ValueError(f"its records field claims {data_len} bytes, {len(data)} are there")
        raw = data if not compression else DECOMPRESSORS[compression](bytes(data), uncompressed_size)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is damage at this offset
        raise _damaged(path, f"the chunk at byte {offset} cannot be decoded "
                             f"({type(exc).__name__}: {exc})") from exc
    if len(raw) != uncompressed_size:
        raise _damaged(path, f"the chunk at byte {offset} holds {len(raw)} bytes, its header says "
                             f"{uncompressed_size}")
    return stored, zlib.crc32(raw)


def _file_crc(stream, start: int, end: int) -> int:
    """CRC-32 of bytes [start, end) of an open file."""
    crc, stream_at = 0, stream.seek(start)
    while stream_at < end:
        block = stream.read(min(CRC_BLOCK_BYTES, end - stream_at))
        if not block:
            break
        crc, stream_at = zlib.crc32(block, crc), stream_at + len(block)
    return crc


def verify_mcap(path: Path) -> None:
    """Raise BagFileError naming `path` and the damage unless the mcap file is whole and every
    CRC it carries (chunks, data section, summary; 0 = not recorded) matches its bytes."""
    with open(path, "rb") as stream:
        footer = read_mcap_footer(stream, path)
        data_crc = zlib.crc32(MCAP_MAGIC)
        for offset, record in _data_records(stream, path, footer):
            if record[0] == OP_DATA_END:
                stored = struct.unpack_from("<I", record, 9)[0] if len(record) >= 13 else 0
                if stored and stored != data_crc:
                    raise _damaged(path, f"the data section (bytes 0-{offset}) fails its CRC "
                                         f"(recorded 0x{stored:08x}, now 0x{data_crc:08x})")
                break
            if record[0] == OP_CHUNK:
                stored, computed = _chunk_crc(path, offset, record)
                if stored and stored != computed:
                    raise _damaged(path, f"the chunk at byte {offset} fails its CRC (recorded "
                                         f"0x{stored:08x}, now 0x{computed:08x})")
            data_crc = zlib.crc32(record, data_crc)
        if footer.summary_crc:
            start, end = footer.summary_crc_span
            if (computed := _file_crc(stream, start, end)) != footer.summary_crc:
                raise _damaged(path, f"the summary section (bytes {start}-{end}) fails its CRC "
                                     f"(recorded 0x{footer.summary_crc:08x}, now 0x{computed:08x})")


def seal_mcap(path: Path) -> None:
    """Write the CRCs a just-written mcap file left at 0 (rosbags writes none), in place: each
    chunk's uncompressed_crc, the Data End's data_section_crc and the footer's summary_crc."""
    with open(path, "r+b") as stream:
        footer = read_mcap_footer(stream, path)
        patches, data_crc = [], zlib.crc32(MCAP_MAGIC)
        for offset, record in _data_records(stream, path, footer):
            if record[0] == OP_DATA_END:
                patches.append((offset + 9, data_crc))
                break
            if record[0] == OP_CHUNK:
                crc = _chunk_crc(path, offset, record)[1]
                patches.append((offset + 9 + 24, crc))  # uncompressed_crc follows 3 uint64s
                record = record[:33] + struct.pack("<I", crc) + record[37:]
            data_crc = zlib.crc32(record, data_crc)
        for at, crc in patches:
            stream.seek(at)
            stream.write(struct.pack("<I", crc))
        stream.flush()
        summary_crc = _file_crc(stream, *footer.summary_crc_span)
        stream.seek(footer.summary_crc_span[1])
        stream.write(struct.pack("<I", summary_crc))
        stream.flush()
        os.fsync(stream.fileno())


def _read_metadata(meta_path: Path) -> dict:
    """The `rosbag2_bagfile_information` of a metadata.yaml, checked for what playing needs."""
    try:
        doc = yaml.safe_load(meta_path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())  # YAML errors span lines; the message is one line
        raise BagFileError(f"bag metadata {meta_path} cannot be read as YAML "
                           f"({type(err).__name__}: {detail}); restore it or re-create the bag") from err
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    problem = None
    if not isinstance(info, dict):
        problem = "has no rosbag2_bagfile_information mapping"
    elif not isinstance(info.get("relative_file_paths"), list) or not all(
            isinstance(p, str) for p in info["relative_file_paths"]):
        problem = "has no relative_file_paths list of storage file names"
    elif info.get("storage_identifier") not in ("mcap", "sqlite3"):
        problem = (f"has storage_identifier {info.get('storage_identifier')!r}, "
                   f"not mcap or sqlite3")
    if problem:
        raise BagFileError(f"bag metadata {meta_path} {problem}; it is not a rosbag2 "
                           f"metadata.yaml (restore it or re-create the bag)")
    return info


def check_bag(bag: Path) -> None:
    """Raise BagFileError (naming the file) unless `bag` is a rosbag2 folder whose metadata
    parses and whose storage files exist, and every mcap file passes `verify_mcap`."""
    meta_path = bag / "metadata.yaml"
    if not meta_path.is_file():
        raise BagFileError(f"{bag} is not a rosbag2 folder (no metadata.yaml); an interrupted "
                           f"ms2_to_bag leaves none")
    info = _read_metadata(meta_path)
    for name in info["relative_file_paths"]:
        path = bag / PurePath(name).name
        if not path.is_file():
            raise BagFileError(f"storage file {path}, listed in {meta_path}, does not exist; the "
                               f"bag is incomplete (re-copy or re-create it)")
        if info["storage_identifier"] == "mcap":
            verify_mcap(path)
        elif path.stat().st_size == 0:
            raise BagFileError(f"storage file {path} is empty (0 bytes); re-create the bag")
