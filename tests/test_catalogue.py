"""The catalogue's facts and path conventions, checked against the dataset documentation."""

import pytest

from rat7m import catalogue as cat


def test_recordings_match_documentation():
    names = [r.name for r in cat.RECORDINGS]
    assert names == ["s1-d1", "s2-d1", "s2-d2", "s3-d1", "s4-d1", "s5-d1", "s5-d2"]
    assert [r.split for r in cat.RECORDINGS] == ["train"] * 5 + ["test"] * 2
    assert cat.recording_by_name("s4-d1").video_article == cat.Article(13767502, 2)
    assert cat.ANNOTATION_ARTICLE == cat.Article(13739233, 2)


def test_joints_and_bones():
    # written out from DESIGN.md and issue 2, not derived from the catalogue
    assert cat.JOINT_NAMES == (
        "HeadF", "HeadB", "HeadL", "SpineF", "SpineM", "SpineL", "Offset1", "Offset2", "HipL", "HipR",
        "ElbowL", "ArmL", "ShoulderL", "ShoulderR", "ElbowR", "ArmR", "KneeR", "KneeL", "ShinL", "ShinR",
    )  # fmt: skip
    assert cat.BONES == (
        (0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (4, 5), (3, 6), (5, 7), (3, 12), (3, 13), (5, 8),
        (5, 9), (6, 7), (8, 17), (9, 16), (17, 18), (16, 19), (10, 11), (10, 12), (13, 14), (14, 15),
    )  # fmt: skip
    assert len(cat.BONE_COLOURS) == len(cat.BONES)
    # the skeleton is connected: every joint is reachable from HeadF along bones
    reached, frontier = {0}, [0]
    while frontier:
        joint = frontier.pop()
        for a, b in cat.BONES:
            for here, there in ((a, b), (b, a)):
                if here == joint and there not in reached:
                    reached.add(there)
                    frontier.append(there)
    assert reached == set(range(20))


def test_path_conventions_round_trip():
    rec = cat.recording_by_name("s1-d1")
    assert cat.image_path(rec, "Camera1", 14) == "images_unpacked/s1-d1/camera1/frame_000014.jpg"
    assert cat.parse_image_path("images_unpacked/s1-d1/camera1/frame_000014.jpg") == (rec, "Camera1", 14)
    assert cat.video_chunk_name(rec, "Camera6", 10500) == "s1-d1-camera6-10500.mp4"
    parsed = cat.parse_video_chunk_name("video_sequences/s5-d2-camera3-3500.mp4")
    assert parsed == cat.ChunkName(cat.recording_by_name("s5-d2"), "Camera3", 3500)
    assert cat.parse_video_chunk_name("s5-d2-camera3-3500.mp4.part") is None
    assert cat.mocap_file_name(rec) == "mocap-s1-d1.mat"
    assert cat.parse_mocap_file_name("annotations/mocap-s5-d1.mat").name == "s5-d1"


def test_selection_parsing_and_errors():
    assert [r.name for r in cat.parse_recordings("s5-d2, s1-d1")] == ["s5-d2", "s1-d1"]
    assert cat.parse_recordings(None) == cat.RECORDINGS
    assert cat.parse_cameras("1,camera3,Camera6") == ("Camera1", "Camera3", "Camera6")
    with pytest.raises(KeyError, match="valid names"):
        cat.parse_recordings("s9-d9")
    with pytest.raises(KeyError, match="unknown camera"):
        cat.parse_cameras("7")


def test_left_right_pairs_and_flip_index_are_mirror_names():
    from rat7m.catalogue import FLIP_INDEX, JOINT_NAMES, KEYPOINT_SIGMAS, LEFT_RIGHT_PAIRS

    for left, right in LEFT_RIGHT_PAIRS:
        assert JOINT_NAMES[left].endswith("L") and JOINT_NAMES[right].endswith("R")
        assert JOINT_NAMES[left][:-1] == JOINT_NAMES[right][:-1]
        assert FLIP_INDEX[left] == right and FLIP_INDEX[right] == left
    assert sorted(FLIP_INDEX) == list(range(len(JOINT_NAMES)))
    assert all(FLIP_INDEX[FLIP_INDEX[i]] == i for i in range(len(JOINT_NAMES)))
    assert FLIP_INDEX[JOINT_NAMES.index("HeadL")] == JOINT_NAMES.index("HeadL")
    assert len(KEYPOINT_SIGMAS) == len(JOINT_NAMES)
    # symmetric joints share a sigma
    assert all(KEYPOINT_SIGMAS[a] == KEYPOINT_SIGMAS[b] for a, b in LEFT_RIGHT_PAIRS)
