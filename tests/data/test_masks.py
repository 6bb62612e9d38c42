import numpy as np

from freeprop.data.masks import bbox, coverage, dilate, erode, is_large, scaled_px, to_video, with_bbox


def disc(frames=2, size=40, radius=10, centre=(20, 20)):
    yy, xx = np.mgrid[:size, :size]
    m = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    return np.repeat(m[None], frames, axis=0)


def test_erosion_keeps_a_ring_of_the_object_outside_the_generate_mask():
    m = disc()
    inner = erode(m, 3)
    assert not (inner & ~m).any()  # strictly inside the object
    ring = m & ~inner  # what VACE keeps of the original object
    assert inner[0, 20, 20] and not inner[0, 20, 10] and ring[0, 20, 10]
    # the ring is the mask pixels within 3 px of the background (ellipse kernel ≈ a disc)
    assert abs(ring[0].sum() - (np.pi * 10**2 - np.pi * 7**2)) < 0.15 * np.pi * (100 - 49)
    np.testing.assert_array_equal(erode(m, 0), m)


def test_bbox_and_with_bbox():
    m = np.zeros((3, 10, 10), bool)
    m[0, 2, 3] = m[0, 5, 7] = True  # two pixels → box rows 2..5, cols 3..7
    m[2, 9, 9] = True
    boxes = bbox(m)
    assert boxes[0].sum() == 4 * 5 and boxes[0, 2:6, 3:8].all()
    assert not boxes[1].any()  # an empty frame stays empty
    assert boxes[2].sum() == 1
    grown = with_bbox(m, dilate_px=1)
    assert grown[0, 1:7, 3:8].all() and grown[0, 2:6, 2:9].all() and not grown[0, 0].any()
    np.testing.assert_array_equal(dilate(m, 0), m)


def test_coverage_large_scaling_and_video():
    full = np.ones((2, 4, 4), bool)
    assert coverage(full) == 1.0 and is_large(full) and not is_large(disc())
    assert scaled_px(8, 720, 1280) == 8 and scaled_px(8, 360, 640) == 4 and scaled_px(8, 16, 16) == 1
    video = to_video(disc(1))
    assert video.shape == (1, 40, 40, 3) and set(np.unique(video)) == {0, 255}
