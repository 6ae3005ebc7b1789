"""Random access to media: a Lance dataset (blob columns) against Parquet and a folder of files.

    python benchmarks/perf/lance_access.py [--rows 2000] [--size-kb 100] [--reads 500]

Builds, in a temporary folder, ``--rows`` incompressible blobs of 0.5x to 2x ``--size-kb``
(like JPEG or MP4 bytes) and stores them three ways: a Lance dataset in the layout
``pytest-lmms pack`` writes (one blob column), a Parquet file (an id column and one binary
column, ``--row-group`` rows per row group) and a folder of one file per blob. Then prints,
for each:

- open time (opening the dataset or file; nothing for the folder),
- collection time (every id: a projection of the id column, or listing the folder),
- per-row random-access latency (median and p95, in ms) over ``--reads`` random rows, the
  same rows for every store, each read checked against its expected length,

and the ratios to the folder of files. Lance is measured twice: ``take_blobs`` alone, and
through ``LanceMediaStore.media(row, 0).read_bytes()`` (which also takes the row's media
entry); ``LanceMediaStore.doc(row)`` (one row, no blob) is timed too. The files were just
written, so the page cache is warm unless ``--cold`` asks the kernel to drop them first
(posix_fadvise DONTNEED, best effort). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pytest_lmms.media import LanceMediaStore  # noqa: E402
from pytest_lmms.media._lance import MediaEntry, pack_schema  # noqa: E402

BATCH_ROWS = 64


def sizes_of(rows: int, size_kb: int, seed: int) -> list[int]:
    low, high = size_kb * 1024 // 2, size_kb * 1024 * 2
    return [int(n) for n in np.random.default_rng(seed).integers(low, high + 1, size=rows)]


def payload(index: int, size: int, seed: int) -> bytes:
    return np.random.default_rng((seed, index)).bytes(size)


def doc_id(index: int) -> str:
    return f"doc{index:07d}"


def batches_of(sizes: list[int], seed: int) -> Iterator[list[tuple[str, bytes]]]:
    for start in range(0, len(sizes), BATCH_ROWS):
        yield [
            (doc_id(i), payload(i, sizes[i], seed)) for i in range(start, min(start + BATCH_ROWS, len(sizes)))
        ]


def write_lance(path: Path, sizes: list[int], seed: int) -> None:
    import hashlib

    import lance
    import pyarrow as pa

    schema = pack_schema(1, "synthetic", "id")
    media_type = schema.field("media").type

    def record_batches() -> Iterator[pa.RecordBatch]:
        for batch in batches_of(sizes, seed):
            entries = [[MediaEntry("image", hashlib.sha256(data).hexdigest()).as_dict()] for _, data in batch]
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array([i for i, _ in batch], pa.string()),
                    pa.array([f'{{"id": "{i}"}}' for i, _ in batch], pa.large_string()),
                    pa.array(entries, media_type),
                    pa.array([data for _, data in batch], pa.large_binary()),
                ],
                schema=schema,
            )

    lance.write_dataset(pa.RecordBatchReader.from_batches(schema, record_batches()), str(path))


def write_parquet(path: Path, sizes: list[int], seed: int, row_group: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("data", pa.binary())])
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches_of(sizes, seed):
            table = pa.table({"id": [i for i, _ in batch], "data": [d for _, d in batch]}, schema=schema)
            writer.write_table(table, row_group_size=row_group)


def write_files(folder: Path, sizes: list[int], seed: int) -> None:
    folder.mkdir()
    for batch in batches_of(sizes, seed):
        for name, data in batch:
            (folder / f"{name}.bin").write_bytes(data)


def disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def drop_page_cache(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def median_ms(function: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def latencies_ms(read: Callable[[int], bytes], rows: list[int], sizes: list[int], name: str) -> list[float]:
    times = []
    for row in rows:
        start = time.perf_counter()
        data = read(row)
        times.append(1000 * (time.perf_counter() - start))
        if len(data) != sizes[row]:
            raise SystemExit(f"{name}: row {row} gave {len(data)} bytes, expected {sizes[row]}")
    return times


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


class ParquetReader:
    """Row r of a Parquet file: read its row group's binary column, take the row."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path)
        counts = [self.file.metadata.row_group(g).num_rows for g in range(self.file.num_row_groups)]
        self.starts = np.cumsum([0, *counts[:-1]])

    def read(self, row: int) -> bytes:
        group = int(np.searchsorted(self.starts, row, side="right")) - 1
        column = self.file.read_row_group(group, columns=["data"]).column(0)
        return column[row - int(self.starts[group])].as_py()  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="blobs to store")
    parser.add_argument("--size-kb", type=int, default=100, help="typical blob size (0.5x to 2x)")
    parser.add_argument("--reads", type=int, default=500, help="random rows to read from each store")
    parser.add_argument("--row-group", type=int, default=64, help="rows per Parquet row group")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold", action="store_true", help="drop each store from the page cache first")
    args = parser.parse_args()

    import lance
    import pyarrow.parquet as pq

    sizes = sizes_of(args.rows, args.size_kb, args.seed)
    rows = [int(r) for r in np.random.default_rng(args.seed + 1).integers(0, args.rows, size=args.reads)]
    print(
        f"{args.rows} blobs, {sum(sizes) / 1e6:.0f} MB ({min(sizes) // 1024}-{max(sizes) // 1024} KB), "
        f"{args.reads} random reads; Parquet row groups of {args.row_group} rows; "
        f"page cache {'dropped (best effort)' if args.cold else 'warm'}"
    )
    with tempfile.TemporaryDirectory(prefix="lance-access-") as tmp:
        root = Path(tmp)
        lance_path, parquet_path, folder = root / "media.lance", root / "media.parquet", root / "files"
        for name, write in (
            ("lance", lambda: write_lance(lance_path, sizes, args.seed)),
            ("parquet", lambda: write_parquet(parquet_path, sizes, args.seed, args.row_group)),
            ("files", lambda: write_files(folder, sizes, args.seed)),
        ):
            start = time.perf_counter()
            write()
            print(f"  generated and wrote {name:<8} in {time.perf_counter() - start:6.2f} s")
        print(
            f"  on disk: lance {disk_size(lance_path) / 1e6:.0f} MB, parquet {disk_size(parquet_path) / 1e6:.0f} MB, "
            f"files {disk_size(folder) / 1e6:.0f} MB"
        )

        results: dict[str, tuple[float, float, list[float]]] = {}

        open_ms = median_ms(lambda: lance.dataset(str(lance_path)))
        ids_ms = median_ms(lambda: lance.dataset(str(lance_path)).to_table(columns=["doc_id"]))
        dataset = lance.dataset(str(lance_path))
        if args.cold:
            drop_page_cache(lance_path)

        def take_blob(row: int) -> bytes:
            blob = dataset.take_blobs("media_0", indices=[row])[0]
            try:
                return bytes(blob.readall())
            finally:
                blob.close()

        results["lance take_blobs"] = (open_ms, ids_ms, latencies_ms(take_blob, rows, sizes, "lance"))

        store_open_ms = median_ms(lambda: LanceMediaStore(lance_path))
        store_ids_ms = median_ms(lambda: LanceMediaStore(lance_path).doc_ids())
        store = LanceMediaStore(lance_path)
        if args.cold:
            drop_page_cache(lance_path)
        results["lance store.media"] = (
            store_open_ms,
            store_ids_ms,
            latencies_ms(lambda row: store.media(row, 0).read_bytes(), rows, sizes, "store"),
        )
        doc_times = []
        for row in rows:
            start = time.perf_counter()
            store.doc(row)
            doc_times.append(1000 * (time.perf_counter() - start))

        open_ms = median_ms(lambda: pq.ParquetFile(parquet_path))
        ids_ms = median_ms(lambda: pq.ParquetFile(parquet_path).read(columns=["id"]))
        reader = ParquetReader(parquet_path)
        if args.cold:
            drop_page_cache(parquet_path)
        results["parquet"] = (open_ms, ids_ms, latencies_ms(reader.read, rows, sizes, "parquet"))

        ids_ms = median_ms(lambda: sorted(os.listdir(folder)))
        if args.cold:
            drop_page_cache(folder)
        results["files"] = (
            0.0,
            ids_ms,
            latencies_ms(lambda row: (folder / f"{doc_id(row)}.bin").read_bytes(), rows, sizes, "files"),
        )

        base_median = statistics.median(results["files"][2])
        print(
            f"\n{'store':<18} {'open ms':>8} {'ids ms':>8} {'read median':>12} {'read p95':>9} {'vs files':>9}"
        )
        for name, (opened, ids, times) in results.items():
            median = statistics.median(times)
            print(
                f"{name:<18} {opened:8.2f} {ids:8.2f} {median:12.3f} {p95(times):9.3f} {median / base_median:8.1f}x"
            )
        lance_median = statistics.median(results["lance take_blobs"][2])
        parquet_median = statistics.median(results["parquet"][2])
        print(
            f"\nparquet / lance take_blobs median read: {parquet_median / lance_median:.1f}x; "
            f"lance store.doc(row) (no blob): median {statistics.median(doc_times):.3f} ms, "
            f"p95 {p95(doc_times):.3f} ms"
        )


if __name__ == "__main__":
    main()
