"""StreamGuard: when a camera stream's temporal buffer must be reset."""

from vsda_ros.temporal.stream import StreamGuard


def test_continuous_stream_never_breaks():
    g = StreamGuard(max_gap_s=0.5)
    assert [g.check(t * 0.1, (480, 360)) for t in range(10)] == [None] * 10
    assert g.resets == 0


def test_breaks_on_resolution_backwards_and_jump():
    g = StreamGuard(max_gap_s=0.5)
    assert g.check(1.0, (480, 360)) is None
    assert 'resolution changed from 480x360 to 320x240' == g.check(1.1, (320, 240))
    assert 'backwards' in g.check(0.9, (320, 240))
    assert 'jumped forward by 2.000 s' in g.check(2.9, (320, 240))
    assert g.check(3.0, (320, 240)) is None  # continuous again after the reset
    assert g.resets == 3


def test_equal_stamps_are_not_a_break():
    g = StreamGuard()
    assert g.check(5.0, (10, 10)) is None and g.check(5.0, (10, 10)) is None


def test_encoding_change_breaks_the_stream_with_its_reason():
    g = StreamGuard()
    assert g.check(1.0, (480, 360), 'rgb8') is None
    assert g.check(1.1, (480, 360), 'rgb8') is None
    assert g.check(1.2, (480, 360), 'mono8') == 'encoding rgb8 -> mono8'
    assert g.check(1.3, (480, 360), 'bgr8') == 'encoding mono8 -> bgr8'
    assert g.check(1.4, (480, 360), None) is None  # unknown: not compared, remembered as bgr8
    assert g.check(1.5, (480, 360), 'bgr8') is None
    assert g.resets == 2


def test_resolution_change_is_named_before_an_encoding_change():
    g = StreamGuard()
    g.check(1.0, (480, 360), 'rgb8')
    assert g.check(1.1, (320, 240), 'mono8').startswith('resolution changed')
    assert g.check(1.2, (320, 240), 'mono8') is None
