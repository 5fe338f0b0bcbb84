"""Chunk index and frame decoding on the synthetic dataset: numeric order, exact frames, precise faults."""

import av
import pytest

from rat7m import catalogue
from rat7m.barcode import read_barcode
from rat7m.video import ChunkIndex, ChunkReadError, read_frames

S1 = catalogue.recording_by_name("s1-d1")


def test_chunk_index_sorts_starts_as_numbers(synthetic_dataset, tmp_path):
    index = ChunkIndex.from_dir(synthetic_dataset.video_dir)
    starts = [c.start for c in index.chunks(S1, "Camera1")]
    assert starts == list(synthetic_dataset.recordings["s1-d1"].chunk_starts)
    assert sorted(map(str, starts)) != [str(s) for s in starts]  # a string sort would break here
    chunk, offset = index.locate(S1, "Camera1", 104)
    assert (chunk.name, offset) == ("s1-d1-camera1-100.mp4", 4)
    chunk, offset = index.locate(S1, "Camera1", 29)
    assert (chunk.name, offset) == ("s1-d1-camera1-20.mp4", 9)
    assert index.next_start(chunk) == 30

    # the real dataset's names: 3500 must not sort after 10500; no chunk before the first start
    for start in (10500, 3500, 7000):
        (tmp_path / catalogue.video_chunk_name(S1, "Camera2", start)).touch()
    (tmp_path / "s1-d1-camera2-3500.mp4.part").touch()
    index = ChunkIndex.from_dir(tmp_path)
    assert [c.start for c in index.chunks(S1, "Camera2")] == [3500, 7000, 10500]
    assert index.locate(S1, "Camera2", 10499)[0].start == 7000
    assert index.locate(S1, "Camera2", 3499) is None
    assert index.locate(S1, "Camera1", 0) is None


@pytest.mark.parametrize("threads", [None, 1])
def test_read_frames_gives_exactly_the_wanted_frames(synthetic_dataset, threads):
    path = synthetic_dataset.video_dir / "s1-d1-camera4-40.mp4"
    got = [(offset, read_barcode(image)) for offset, image in read_frames(path, [0, 3, 4, 8], threads)]
    assert got == [(0, 40), (3, 43), (4, 44), (8, 48)]


def test_read_frames_reports_frames_beyond_a_short_chunk(synthetic_dataset):
    path = synthetic_dataset.video_dir / "s1-d1-camera1-120.mp4"  # the short last chunk: 5 frames
    frames = read_frames(path, [1, 4, 5, 9])
    assert [(o, read_barcode(image)) for o, image in (next(frames), next(frames))] == [(1, 121), (4, 124)]
    with pytest.raises(ChunkReadError, match="ends after 5 frames") as caught:
        next(frames)
    assert caught.value.decoded == 5 and caught.value.at_end


def test_read_frames_reports_missing_and_truncated_chunks(synthetic_dataset, tmp_path):
    with pytest.raises(ChunkReadError, match="missing") as caught:
        list(read_frames(tmp_path / "s1-d1-camera1-0.mp4", [0]))
    assert caught.value.decoded == 0

    source = synthetic_dataset.video_dir / "s1-d1-camera2-10.mp4"
    truncated = tmp_path / source.name
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 2])  # index at the end: unreadable
    with pytest.raises(ChunkReadError, match="cannot open"):
        list(read_frames(truncated, [0]))

    # with the index first (faststart), a truncated chunk opens and stops early: frames before the
    # cut are still exact, the rest are reported, not invented
    faststart = tmp_path / "faststart.mp4"
    _remux_faststart(source, faststart)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: faststart.stat().st_size * 9 // 10])
    delivered = []
    with pytest.raises(ChunkReadError, match="truncated or corrupt") as caught:
        for offset, image in read_frames(cut, range(10)):
            delivered.append((offset, read_barcode(image)))
    assert 0 < caught.value.decoded < 10 and not caught.value.at_end
    assert delivered == [(o, 10 + o) for o in range(caught.value.decoded)]


def _remux_faststart(source, target):
    """Copy an MP4's packets into a new file with its index (moov) before the data."""
    with av.open(str(source)) as inp, av.open(str(target), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
