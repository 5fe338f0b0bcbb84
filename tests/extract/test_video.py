"""Chunk index and frame decoding on the synthetic dataset: numeric order, exact frames, precise faults,
with both decoders (OpenCV, and PyAV skipping unwanted non-reference frames)."""

import logging
import re
import sys

import av
import numpy as np
import pytest

from rat7m import catalogue
from rat7m.barcode import draw_barcode, read_barcode
from rat7m.errors import BadInputError
from rat7m.video import ChunkIndex, ChunkReadError, choose_decoder, read_frames, resolve_decoder

DECODERS = ["opencv", "pyav"]

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


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("threads", [None, 1])
def test_read_frames_gives_exactly_the_wanted_frames(any_dataset, threads, decoder, caplog):
    path = any_dataset.video_dir / "s1-d1-camera4-40.mp4"
    with caplog.at_level(logging.DEBUG, logger="rat7m.video"):
        got = [(offset, read_barcode(image)) for offset, image in read_frames(path, [0, 3, 4, 8], threads, decoder)]
        assert got == [(0, 40), (3, 43), (4, 44), (8, 48)]
        # B-frames wanted next to skipped ones (the encoder's pattern: I b B b P b B b P, b not referenced)
        got = [(o, read_barcode(image)) for o, image in read_frames(path, [1, 2, 5, 7, 9], threads, decoder)]
        assert got == [(1, 41), (2, 42), (5, 45), (7, 47), (9, 49)]
    assert "decoding it with OpenCV" not in caplog.text  # PyAV did it all itself


@pytest.mark.parametrize("threads", [None, 1])
def test_pyav_skips_unwanted_non_reference_frames_undecoded(synthetic_dataset, threads, caplog):
    path = synthetic_dataset.video_dir / "s1-d1-camera4-40.mp4"
    with caplog.at_level(logging.DEBUG, logger="rat7m.video"):
        got = [(offset, read_barcode(image)) for offset, image in read_frames(path, [0, 4, 8], threads, "pyav")]
    assert got == [(0, 40), (4, 44), (8, 48)]
    output = [int(n) for n in re.findall(r"decoder output (\d+) frames up to frame 8", caplog.text)]
    assert len(output) == 1 and 3 <= output[0] < 9  # OpenCV decodes all 9; the unreferenced B-frames were skipped
    assert "decoding it with OpenCV" not in caplog.text


def test_both_decoders_give_the_same_pictures(synthetic_dataset):
    path = synthetic_dataset.video_dir / "s2-d1-camera3-0.mp4"
    offsets = list(range(10))
    pictures = {decoder: [image for _, image in read_frames(path, offsets, 1, decoder)] for decoder in DECODERS}
    assert len(pictures["pyav"]) == len(pictures["opencv"]) == 10
    differences = [np.abs(a.astype(int) - b.astype(int)) for a, b in zip(*pictures.values(), strict=True)]
    assert all(a.shape == b.shape and a.dtype == b.dtype == np.uint8 for a, b in zip(*pictures.values(), strict=True))
    assert np.mean(differences) < 2  # grey levels: the same YUV -> BGR conversion (identical here)


def test_auto_chooses_per_chunk_pyav_only_where_frames_are_reordered(synthetic_dataset, capture_dataset, tmp_path):
    # B-frames: PyAV can skip the unwanted non-reference ones; capture (P-frames only): nothing to skip
    assert choose_decoder(synthetic_dataset.video_dir / "s2-d1-camera3-0.mp4") == "pyav"
    assert choose_decoder(capture_dataset.video_dir / "s2-d1-camera3-0.mp4") == "opencv"
    assert choose_decoder(capture_dataset.video_dir / "s2-d1-camera3-0.mp4", "pyav") == "pyav"  # as asked
    assert choose_decoder(synthetic_dataset.video_dir / "s2-d1-camera3-0.mp4", "opencv") == "opencv"
    broken = tmp_path / "s2-d1-camera3-0.mp4"
    broken.write_bytes(b"not a video")
    assert choose_decoder(broken) == "opencv"  # which reports it the way both decoders do
    assert choose_decoder(tmp_path / "missing.mp4") == "opencv"


def test_auto_decoder_is_pyav_when_installed_else_opencv(monkeypatch):
    assert resolve_decoder("auto") == "pyav"
    assert resolve_decoder("opencv") == "opencv"
    with pytest.raises(BadInputError, match="unknown decoder 'ffmpeg'"):
        resolve_decoder("ffmpeg")
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed: `import av` fails
    assert resolve_decoder("auto") == "opencv"
    with pytest.raises(BadInputError, match="pip install av"):
        resolve_decoder("pyav")


@pytest.mark.parametrize("decoder", DECODERS)
def test_read_frames_reports_frames_beyond_a_short_chunk(any_dataset, decoder):
    path = any_dataset.video_dir / "s1-d1-camera1-120.mp4"  # the short last chunk: 5 frames
    frames = read_frames(path, [1, 4, 5, 9], decoder=decoder)
    assert [(o, read_barcode(image)) for o, image in (next(frames), next(frames))] == [(1, 121), (4, 124)]
    with pytest.raises(ChunkReadError, match="ends after 5 frames") as caught:
        next(frames)
    assert caught.value.decoded == 5 and caught.value.at_end


@pytest.mark.parametrize("decoder", DECODERS)
def test_read_frames_reports_missing_and_truncated_chunks(synthetic_dataset, tmp_path, decoder, caplog):
    with pytest.raises(ChunkReadError, match="missing") as caught:
        list(read_frames(tmp_path / "s1-d1-camera1-0.mp4", [0], decoder=decoder))
    assert caught.value.decoded == 0

    source = synthetic_dataset.video_dir / "s1-d1-camera2-10.mp4"
    truncated = tmp_path / source.name
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 2])  # index at the end: unreadable
    with pytest.raises(ChunkReadError, match="cannot open") as caught:
        list(read_frames(truncated, [0], decoder=decoder))
    assert caught.value.decoded == 0

    # with the index first (faststart), a truncated chunk opens and stops early: frames before the
    # cut are still exact, the rest are reported, not invented
    faststart = tmp_path / "faststart.mp4"
    _remux_faststart(source, faststart)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: faststart.stat().st_size * 9 // 10])
    delivered = []
    debug = caplog.at_level(logging.DEBUG, logger="rat7m.video")
    with debug, pytest.raises(ChunkReadError, match="truncated or corrupt") as caught:
        for offset, image in read_frames(cut, range(10), decoder=decoder):
            delivered.append((offset, read_barcode(image)))
    assert 0 < caught.value.decoded < 10 and not caught.value.at_end
    assert delivered == [(o, 10 + o) for o in range(caught.value.decoded)]
    if decoder == "pyav":  # fewer packets than the header lists: PyAV hands the chunk to OpenCV
        assert re.search(r"\d packets while the header lists 10 frames\); decoding it with OpenCV", caplog.text)


def _remux_faststart(source, target):
    """Copy an MP4's packets into a new file with its index (moov) before the data."""
    with av.open(str(source)) as inp, av.open(str(target), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def test_pyav_reports_frames_an_open_gop_chunk_cannot_give_instead_of_counting(tmp_path):
    # A chunk cut at an open-GOP key frame, without an edit list: its first frame in presentation
    # order is a B-frame that references the previous chunk, and the decoder drops it. Handing the
    # chunk to OpenCV, which counts the decoder's output, would shift every frame by one.
    whole, chunk = tmp_path / "whole.mp4", tmp_path / "s1-d1-camera1-9.mp4"
    options = {"x264-params": "bframes=3:b-adapt=0:keyint=10:min-keyint=10:scenecut=0:open-gop=1"}
    with av.open(str(whole), "w") as out:
        stream = out.add_stream("libx264", rate=15, options=options)
        stream.width, stream.height, stream.pix_fmt = 128, 48, "yuv420p"
        for index in range(20):
            image = np.full((48, 128, 3), 40 + 9 * index, np.uint8)
            draw_barcode(image, index)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode())
    with av.open(str(whole)) as inp, av.open(str(chunk), "w", options={"use_editlist": "0"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        keys = 0
        for packet in inp.demux(inp.streams.video[0]):
            keys += packet.is_keyframe
            if packet.dts is not None and keys >= 2:  # from the second key frame (frame 10) in decode order
                packet.stream = stream
                out.mux(packet)
    # by pts, the chunk's frame 0 is the leading B-frame (picture 9), frame 1 the key frame (picture 10)
    got = [(offset, read_barcode(image)) for offset, image in read_frames(chunk, [1, 2, 5], 1, "pyav")]
    assert got == [(1, 10), (2, 11), (5, 14)]
    for offsets in ([0, 1, 2], [0]):
        frames = read_frames(chunk, offsets, 1, "pyav")
        with pytest.raises(ChunkReadError, match=r"gives no picture for frame 0 .*open-GOP") as caught:
            next(frames)  # never picture 10 as frame 0
        assert caught.value.decoded == 0 and not caught.value.at_end


def test_a_container_with_no_streams_before_probing_is_still_read(tmp_path):
    """PyAV refuses per-stream open options (ValueError) for a container like MPEG-PS: the readers open it without."""
    import fractions

    import av

    path = tmp_path / "s2-d1-camera3-0.mp4"  # MPEG-2 with B-frames in an MPEG-PS container, named as a chunk
    with av.open(str(path), "w", format="mpeg") as container:
        stream = container.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"bf": "2", "g": "12"}
        for i in range(30):
            image = np.full((64, 96, 3), 4 * i, np.uint8)
            image[:, 3 * i : 3 * i + 5] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, fractions.Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert choose_decoder(path) == "pyav"  # B-frames, seen once the container is opened without the option
    offsets = [0, 5, 11, 20]
    frames = {decoder: [image for _, image in read_frames(path, offsets, 1, decoder)] for decoder in ("auto", "opencv")}
    assert len(frames["auto"]) == len(offsets)
    assert all(np.array_equal(a, b) for a, b in zip(*frames.values(), strict=True))


def _huge_frames(path, width: int, height: int, frames: int = 2) -> None:
    """A small file (PNG frames of one grey level) whose stream declares ``width`` x ``height`` px frames."""
    with av.open(str(path), "w", format="mov") as container:
        stream = container.add_stream("png", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "gray"
        frame = av.VideoFrame.from_ndarray(np.zeros((height, width), np.uint8), format="gray")
        for i in range(frames):
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.mark.parametrize("decoder", ["opencv", "pyav"])
@pytest.mark.parametrize("threads", [1, None])
def test_a_stream_declaring_huge_frames_is_refused_before_decoding(tmp_path, decoder, threads):
    """A chunk whose frames are over MAX_FRAME_PIXELS is a chunk fault (ChunkReadError, listed by extraction), found
    from the stream's header: before, 16000 x 16000 px frames (a 560 KB file) took ~1.8 GB a process, and OpenCV's
    own failure to allocate was a cv2.error traceback that ended the whole extraction."""
    from rat7m.video import MAX_FRAME_PIXELS

    path = tmp_path / "s1-d1-camera1-0.mp4"
    _huge_frames(path, 4100, 4100)  # 16.81 Mpx, just over 4096 x 4096
    assert 4100 * 4100 > MAX_FRAME_PIXELS
    with pytest.raises(ChunkReadError, match=r"^s1-d1-camera1-0\.mp4: frames of 4100 x 4100 px, over") as caught:
        list(read_frames(path, [0, 1], threads, decoder))
    assert caught.value.decoded == 0
    _huge_frames(path, 4096, 4096)  # at the bound: decoded
    assert [image.shape for _, image in read_frames(path, [1], threads, decoder)] == [(4096, 4096, 3)]


def test_a_frame_larger_than_its_stream_is_refused_by_pyav_before_conversion(tmp_path):
    """A stream may change its frame size mid-way (here a PNG frame of 4100 x 4100 px among 64 x 64 ones): PyAV
    checks each frame before converting it (OpenCV scales every frame to the stream's first size)."""
    import fractions

    path = tmp_path / "s1-d1-camera1-0.mp4"
    with av.open(str(path), "w", format="mov") as container:
        stream = container.add_stream("png", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "gray"
        big = av.CodecContext.create("png", "w")
        big.width, big.height, big.pix_fmt, big.time_base = 4100, 4100, "gray", fractions.Fraction(1, 30)
        for i, (size, encoder) in enumerate([(64, stream), (4100, big), (64, stream)]):
            frame = av.VideoFrame.from_ndarray(np.zeros((size, size), np.uint8), format="gray")
            frame.pts = i
            for packet in encoder.encode(frame):
                packet.stream, packet.pts, packet.dts = stream, i, i
                container.mux(packet)
        container.mux(stream.encode())
    got = []
    with pytest.raises(ChunkReadError, match=r"frames of 4100 x 4100 px, over") as caught:
        got.extend(offset for offset, _ in read_frames(path, [0, 1, 2], 1, "pyav"))
    assert got == [0] and caught.value.decoded == 1
    assert [image.shape for _, image in read_frames(path, [0, 1, 2], 1, "opencv")] == [(64, 64, 3)] * 3
