"""rosbag2 reading and writing (vsda_ros.data.bags), open_labelled and ``vsda bag make/info``.

No DDS here: bags are written and read with rosbags; rclpy is only used (when installed) to
check that the written CDR deserializes as real ROS 2 messages.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from vsda_ros.apps import bag as bag_cli
from vsda_ros.data.bag_writer import write_bag
from vsda_ros.data.bags import BagSource, bag_info, image_topics, open_reader, typestore
from vsda_ros.data.labelled import (
    CITYSCAPES_LABEL_TO_TRAIN,
    cityscapes_to_train_ids,
    open_labelled,
)
from vsda_ros.frames import Frame

H, W, N = 24, 32, 6
T0 = 1_700_000_000.0


def synthetic(n: int = N, seed: int = 0) -> list[tuple[Frame, np.ndarray]]:
    """Smooth random RGB frames (JPEG-friendly) 0.1 s apart with random class-id labels."""
    rng = np.random.default_rng(seed)

    def image() -> np.ndarray:
        coarse = rng.integers(0, 256, (H // 4, W // 4, 3), dtype=np.uint8)
        return cv2.resize(coarse, (W, H), interpolation=cv2.INTER_LINEAR)

    return [
        (
            Frame(image(), stamp=T0 + 0.1 * i, name=f'f{i}.png'),
            rng.integers(0, 12, (H, W), dtype=np.uint8),
        )
        for i in range(n)
    ]


def _raw_writer(out: Path, storage: str = 'mcap'):
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=plugin)
    writer.open()
    return writer


def _image_msg(
    store,
    stamp_ns: int,
    array: np.ndarray,
    encoding: str,
    frame_id: str = 'cam',
    step: int | None = None,
    width: int | None = None,
):
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    Image = store.types['sensor_msgs/msg/Image']
    h, w = array.shape[0], width or array.shape[1]
    return Image(
        header=Header(
            stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id
        ),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=step if step is not None else array.nbytes // h,
        data=np.ascontiguousarray(array).view(np.uint8).reshape(-1),
    )


# --------------------------------------------------------------------------------------------
# write_bag → BagSource round trips


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('compression', ['none', 'jpeg', 'png'])
def test_round_trip(tmp_path: Path, storage: str, compression: str) -> None:
    pairs = synthetic()
    summary = write_bag(tmp_path / 'bag', pairs, storage=storage, compression=compression)
    topic = '/camera/image_raw' + ('' if compression == 'none' else '/compressed')
    assert summary['frames'] == N and summary['labels'] == N
    assert summary['storage'] == storage and set(summary['topics']) == {topic, '/camera/labels'}
    assert summary['duration'] == pytest.approx(0.1 * (N - 1), abs=1e-6)

    kind = 'Image' if compression == 'none' else 'CompressedImage'
    assert image_topics(tmp_path / 'bag') == {
        topic: f'sensor_msgs/msg/{kind}',
        '/camera/labels': 'sensor_msgs/msg/Image',
    }
    src = BagSource(tmp_path / 'bag', label_topic='/camera/labels')  # topic auto-picked
    assert src.topic == topic and len(src) == N
    got = list(src.labelled())
    assert len(got) == N and src.skipped == 0
    for i, ((frame, label), (orig, orig_label)) in enumerate(zip(got, pairs, strict=False)):
        assert frame.name == f'{i:06d}.png' and frame.camera == topic
        assert frame.frame_id == 'camera'
        assert frame.stamp == pytest.approx(orig.stamp, abs=1e-6)
        assert frame.image.dtype == np.uint8 and frame.image.shape == (H, W, 3)
        if compression == 'jpeg':  # lossy, but the same picture
            error = np.abs(frame.image.astype(int) - orig.image).mean()
            swapped = np.abs(frame.image[..., ::-1].astype(int) - orig.image).mean()
            assert error < 8 and swapped > 2 * error
        else:
            np.testing.assert_array_equal(frame.image, orig.image)  # bit-exact
        np.testing.assert_array_equal(label, orig_label)
    # plain iteration gives the same frames
    assert [f.stamp for f in src] == [f.stamp for f, _ in got]


def test_written_cdr_is_real_ros2(tmp_path: Path) -> None:
    """rclpy deserializes what rosbags wrote, and the fields are what was given."""
    pytest.importorskip('rclpy')
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    pairs = synthetic(2)
    write_bag(tmp_path / 'raw', pairs)
    write_bag(tmp_path / 'jpg', pairs, compression='jpeg', topic='/cam/image/compressed')
    reader = open_reader(tmp_path / 'raw')
    try:
        msgs = [
            (c.topic, deserialize_message(bytes(raw), Image)) for c, _, raw in reader.messages()
        ]
    finally:
        reader.close()
    img = [m for t, m in msgs if t == '/camera/image_raw'][0]
    lab = [m for t, m in msgs if t == '/camera/labels'][0]
    assert (img.encoding, img.width, img.height, img.step) == ('rgb8', W, H, 3 * W)
    assert bytes(img.data) == pairs[0][0].image.tobytes()
    assert (lab.encoding, lab.step) == ('mono8', W) and bytes(lab.data) == pairs[0][1].tobytes()
    assert lab.header == img.header and img.header.frame_id == 'camera'
    assert img.header.stamp.sec == int(T0) and img.header.stamp.nanosec == 0
    reader = open_reader(tmp_path / 'jpg')
    try:
        topics = {c.topic for c in reader.connections}
        conn = [c for c in reader.connections if c.topic == '/cam/image/compressed'][0]
        raw = next(raw for _, _, raw in reader.messages(connections=[conn]))
    finally:
        reader.close()
    assert topics == {'/cam/image/compressed', '/camera/labels'}  # no double /compressed
    comp = deserialize_message(bytes(raw), CompressedImage)
    assert 'jpeg' in comp.format and bytes(comp.data[:2]) == b'\xff\xd8'


def test_single_storage_file_and_info(tmp_path: Path) -> None:
    write_bag(tmp_path / 'm', synthetic(), storage='mcap')
    write_bag(tmp_path / 's', synthetic(), storage='sqlite3')
    for path in (tmp_path / 'm' / 'm.mcap', tmp_path / 's' / 's.db3'):
        assert path.is_file()
        assert len(list(BagSource(path, topic='/camera/image_raw'))) == N
    info = bag_info(tmp_path / 's')
    assert info['storage'] == 'sqlite3' and info['messages'] == 2 * N
    assert info['topics']['/camera/image_raw']['count'] == N
    assert info['topics']['/camera/image_raw']['rate'] == pytest.approx(10.0, rel=1e-3)
    assert info['duration'] == pytest.approx(0.5, abs=1e-6)


def test_labels_match_by_stamp(tmp_path: Path) -> None:
    """Labels are joined on the exact header stamp, wherever they sit in the log."""
    store = typestore()
    pairs = synthetic(8)
    writer = _raw_writer(tmp_path / 'bag')
    img = writer.add_connection('/cam/image', 'sensor_msgs/msg/Image', typestore=store)
    lab = writer.add_connection('/cam/labels', 'sensor_msgs/msg/Image', typestore=store)
    stamps = [int(round(f.stamp * 1e9)) for f, _ in pairs]
    for ns, (frame, _) in zip(stamps, pairs, strict=False):
        writer.write(
            img,
            ns,
            store.serialize_cdr(
                _image_msg(store, ns, frame.image, 'rgb8'), 'sensor_msgs/msg/Image'
            ),
        )
    # labels logged late (after all images), one missing (frame 3), one for no frame at all,
    # and one 1 ns off its frame's stamp (frame 5: must not match)
    for i, ns in enumerate(stamps):
        if i == 3:
            continue
        key = ns + 1 if i == 5 else ns
        writer.write(
            lab,
            stamps[-1] + 10**9 + i,
            store.serialize_cdr(
                _image_msg(store, key, pairs[i][1], 'mono8'), 'sensor_msgs/msg/Image'
            ),
        )
    writer.write(
        lab,
        stamps[-1] + 2 * 10**9,
        store.serialize_cdr(
            _image_msg(store, stamps[-1] + 10**9, pairs[0][1], 'mono8'), 'sensor_msgs/msg/Image'
        ),
    )
    writer.close()

    got = list(BagSource(tmp_path / 'bag', label_topic='/cam/labels').labelled())
    assert [f.stamp for f, _ in got] == pytest.approx([f.stamp for f, _ in pairs])
    for i, (_, label) in enumerate(got):
        if i in (3, 5):
            assert label is None
        else:
            np.testing.assert_array_equal(label, pairs[i][1])
    # the same through open_labelled, label topic auto-detected
    assert sum(lbl is not None for _, lbl in open_labelled(tmp_path / 'bag')) == 6
    # without a label topic: labels are None
    assert all(lbl is None for _, lbl in BagSource(tmp_path / 'bag').labelled())


def test_other_encodings_and_bad_messages(tmp_path: Path, caplog) -> None:
    """bgr8 / mono16 images decode to RGB; mono16 labels keep their ids; broken messages are
    skipped and counted, never raised."""
    store = typestore()
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    label16 = rng.integers(0, 300, (H, W)).astype(np.uint16)
    writer = _raw_writer(tmp_path / 'bag', 'sqlite3')
    img = writer.add_connection('/cam/image', 'sensor_msgs/msg/Image', typestore=store)
    lab = writer.add_connection('/cam/labels', 'sensor_msgs/msg/Image', typestore=store)
    ser = store.serialize_cdr
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    padded = np.zeros((H, 3 * W + 4), np.uint8)  # bgr8 with 4 bytes of row padding
    padded[:, : 3 * W] = bgr.reshape(H, -1)
    msgs = [
        _image_msg(store, 1 * 10**9, bgr, 'bgr8'),
        _image_msg(store, 2 * 10**9, padded, 'bgr8', step=3 * W + 4, width=W),
        _image_msg(store, 3 * 10**9, rgb, 'nonsense8'),  # unknown encoding
        _image_msg(store, 4 * 10**9, rgb[:, :, 0], 'rgb8', step=3 * W),  # too little data
        _image_msg(store, 5 * 10**9, (rgb[..., 0].astype(np.uint16) << 8), 'mono16'),
    ]
    for i, m in enumerate(msgs):
        writer.write(img, (i + 1) * 10**9, ser(m, 'sensor_msgs/msg/Image'))
    writer.write(img, 6 * 10**9, b'\x00\x01\x00\x00garbage')  # not CDR at all
    writer.write(
        lab,
        1 * 10**9,
        ser(_image_msg(store, 1 * 10**9, label16, 'mono16'), 'sensor_msgs/msg/Image'),
    )
    writer.close()

    src = BagSource(tmp_path / 'bag', label_topic='/cam/labels')
    assert len(src) == 6
    with caplog.at_level(logging.WARNING):
        got = list(src.labelled())
    assert src.skipped == 3 and 'skipped' in caplog.text
    assert [f.name for f, _ in got] == ['000000.png', '000001.png', '000004.png']
    np.testing.assert_array_equal(got[0][0].image, rgb)
    np.testing.assert_array_equal(got[1][0].image, rgb)
    np.testing.assert_allclose(got[2][0].image[..., 1], rgb[..., 0], atol=1)  # mono16 → grey
    np.testing.assert_array_equal(got[0][1], label16)
    assert got[0][1].dtype == np.uint16 and got[1][1] is None
    assert len(list(src)) == 3 and src.skipped == 3  # reset per iteration


def test_topic_choice_and_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        BagSource(tmp_path / 'missing')
    with pytest.raises(FileNotFoundError):
        open_labelled(tmp_path / 'missing')
    pairs = synthetic(2)
    write_bag(tmp_path / 'a', pairs, topic='/front/image')
    assert BagSource(tmp_path / 'a').topic == '/front/image'  # labels topic is not a candidate
    with pytest.raises(ValueError, match='/front/image'):
        BagSource(tmp_path / 'a', topic='/rear/image')
    with pytest.raises(ValueError, match='label topic'):
        BagSource(tmp_path / 'a', label_topic='/nope')

    store = typestore()
    writer = _raw_writer(tmp_path / 'two')
    for topic in ('/left/image', '/right/image'):
        conn = writer.add_connection(topic, 'sensor_msgs/msg/Image', typestore=store)
        writer.write(
            conn,
            1,
            store.serialize_cdr(
                _image_msg(store, 1, pairs[0][0].image, 'rgb8'), 'sensor_msgs/msg/Image'
            ),
        )
    writer.close()
    with pytest.raises(ValueError, match=r'more than one.*/left/image.*/right/image'):
        BagSource(tmp_path / 'two')
    assert len(list(BagSource(tmp_path / 'two', topic='/right/image'))) == 1

    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='not a rosbag2'):
        BagSource(tmp_path / 'empty')


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / 'bag'
    write_bag(out, synthetic(2))
    with pytest.raises(FileExistsError):
        write_bag(out, synthetic(3))
    assert write_bag(out, synthetic(3), overwrite=True, storage='sqlite3')['frames'] == 3
    assert len(BagSource(out)) == 3
    precious = tmp_path / 'notabag'
    precious.mkdir()
    (precious / 'thesis.tex').write_text('keep me')
    with pytest.raises(FileExistsError):
        write_bag(precious, synthetic(1), overwrite=True)
    assert (precious / 'thesis.tex').exists()


def test_write_rejects_bad_input_and_cleans_up(tmp_path: Path) -> None:
    frame, label = synthetic(1)[0]
    with pytest.raises(ValueError, match='label'):
        write_bag(tmp_path / 'b', [(frame, label[:10])])
    assert not (tmp_path / 'b').exists()
    with pytest.raises(ValueError, match='RGB'):
        write_bag(tmp_path / 'b', [(Frame(frame.image[..., 0]), None)])
    with pytest.raises(ValueError, match='storage'):
        write_bag(tmp_path / 'b', [(frame, None)], storage='rosbag1')
    # frames without labels: no label topic at all
    summary = write_bag(tmp_path / 'b', [(frame, None)])
    assert summary['labels'] == 0 and list(summary['topics']) == ['/camera/image_raw']


# --------------------------------------------------------------------------------------------
# open_labelled on every source kind


def _write_png(path: Path, array: np.ndarray) -> None:
    img = array[..., ::-1] if array.ndim == 3 else array
    assert cv2.imwrite(str(path), np.ascontiguousarray(img))


def _write_labelled_folder(root: Path, pairs, names: list[str]) -> None:
    """CamVid layout: ``root/img/NAME`` frames and ``root/ann/NAME`` labels."""
    (root / 'img').mkdir()
    (root / 'ann').mkdir()
    for name, (frame, label) in zip(names, pairs, strict=False):
        _write_png(root / 'img' / name, frame.image)
        _write_png(root / 'ann' / name, label)


def test_open_labelled_camvid_layout(tmp_path: Path) -> None:
    pairs = synthetic(4)
    _write_labelled_folder(tmp_path, pairs, [f'seq_{i * 2 + 8:05d}.png' for i in range(4)])
    got = list(open_labelled(tmp_path / 'img', labels=tmp_path / 'ann', fps=10))
    assert [f.name for f, _ in got] == [
        'seq_00008.png',
        'seq_00010.png',
        'seq_00012.png',
        'seq_00014.png',
    ]
    assert [f.stamp for f, _ in got] == pytest.approx([0, 0.1, 0.2, 0.3])
    for (frame, label), (orig, orig_label) in zip(got, pairs, strict=False):
        np.testing.assert_array_equal(frame.image, orig.image)
        np.testing.assert_array_equal(label, orig_label)
    assert len(list(open_labelled(tmp_path / 'img', max_frames=2))) == 2
    assert all(lbl is None for _, lbl in open_labelled(tmp_path / 'img'))
    (tmp_path / 'ann' / 'seq_00012.png').unlink()
    with pytest.raises(FileNotFoundError, match='seq_00012'):
        list(open_labelled(tmp_path / 'img', labels=tmp_path / 'ann'))
    with pytest.raises(FileNotFoundError):
        open_labelled(tmp_path / 'img', labels=tmp_path / 'nolabels')


def test_open_labelled_cityscapes_layout(tmp_path: Path) -> None:
    (tmp_path / 'left').mkdir()
    (tmp_path / 'gt').mkdir()
    ids = np.zeros((H, W), np.uint8)
    ids[:4], ids[4:8], ids[8:12], ids[12:16], ids[16:20] = 7, 26, 33, 0, 15  # road car bike
    ids[20:] = 34  # void, void(bridge), >33
    frame = synthetic(1)[0][0]
    _write_png(tmp_path / 'left' / 'aachen_000000_000019_leftImg8bit.png', frame.image)
    _write_png(tmp_path / 'gt' / 'aachen_000000_000019_gtFine_labelIds.png', ids)
    [(got, label)] = list(open_labelled(tmp_path / 'left', labels=tmp_path / 'gt'))
    np.testing.assert_array_equal(got.image, frame.image)
    assert label.dtype == np.uint8
    assert (label[0, 0], label[5, 0], label[9, 0], label[13, 0], label[17, 0], label[21, 0]) == (
        0,
        13,
        18,
        255,
        255,
        255,
    )
    # the full table: 19 train ids, each once, everything else ignore
    table = CITYSCAPES_LABEL_TO_TRAIN
    assert sorted(table[table != 255].tolist()) == list(range(19))
    assert {11: 2, 21: 8, 23: 10, 24: 11, 31: 16} == {
        k: int(table[k]) for k in (11, 21, 23, 24, 31)
    }
    np.testing.assert_array_equal(
        cityscapes_to_train_ids(np.array([[7, 8], [-1, 1000]])), [[0, 1], [255, 255]]
    )
    (tmp_path / 'gt' / 'aachen_000000_000019_gtFine_labelIds.png').unlink()
    with pytest.raises(FileNotFoundError, match='gtFine_labelIds'):
        list(open_labelled(tmp_path / 'left', labels=tmp_path / 'gt'))


def test_open_labelled_video(tmp_path: Path) -> None:
    path = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    got = list(open_labelled(path))
    assert len(got) == 5 and all(lbl is None for _, lbl in got)
    assert [f.stamp for f, _ in got] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert abs(int(got[3][0].image.mean()) - 120) < 6 and got[0][0].image.shape == (48, 64, 3)
    assert len(list(open_labelled(path, max_frames=3))) == 3
    with pytest.raises(ValueError, match='video'):
        open_labelled(path, labels=tmp_path)


def test_open_labelled_bag(tmp_path: Path) -> None:
    pairs = synthetic()
    write_bag(tmp_path / 'bag', pairs, compression='png', label_topic='/camera/gt_labels')
    got = list(open_labelled(tmp_path / 'bag'))  # topic and label topic auto-detected
    assert len(got) == N
    for (frame, label), (orig, orig_label) in zip(got, pairs, strict=False):
        np.testing.assert_array_equal(frame.image, orig.image)
        np.testing.assert_array_equal(label, orig_label)
    got = list(
        open_labelled(
            tmp_path / 'bag' / 'bag.mcap',
            topic='/camera/image_raw/compressed',
            labels='/camera/gt_labels',
            max_frames=2,
        )
    )
    assert len(got) == 2 and got[1][1] is not None
    with pytest.raises(ValueError, match='label topic'):
        open_labelled(tmp_path / 'bag', labels='/other/labels')


# --------------------------------------------------------------------------------------------
# vsda bag make / info, and the real CamVid clip


def test_bag_cli_make_and_info(tmp_path: Path, capsys) -> None:
    pairs = synthetic(3)
    _write_labelled_folder(tmp_path, pairs, [f'{i:04d}.png' for i in range(3)])
    out = tmp_path / 'bag'
    argv = [
        'make',
        str(tmp_path / 'img'),
        '--labels',
        str(tmp_path / 'ann'),
        '--out',
        str(out),
        '--storage',
        'sqlite3',
        '--fps',
        '5',
        '--start-time',
        '100',
        '--quiet',
        '--json',
        str(tmp_path / 's.json'),
    ]
    assert bag_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert 'frames 3, labels 3' in printed and '/camera/labels' in printed
    summary = json.loads((tmp_path / 's.json').read_text())
    assert summary['storage'] == 'sqlite3' and summary['start'] == pytest.approx(100.0)
    assert summary['duration'] == pytest.approx(0.4)
    assert bag_cli.main(argv) == 2  # exists
    assert 'exists' in capsys.readouterr().err
    assert bag_cli.main([*argv, '--overwrite', '--compression', 'jpeg', '--max-frames', '2']) == 0
    capsys.readouterr()
    assert bag_cli.main(['info', str(out)]) == 0
    printed = capsys.readouterr().out
    assert '/camera/image_raw/compressed' in printed and 'CompressedImage' in printed
    assert bag_cli.main(['info', str(out), '--json']) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['topics']['/camera/labels']['count'] == 2
    assert bag_cli.main(['info', str(tmp_path / 'nothing')]) == 2


def test_real_camvid_clip_bag(tmp_path: Path, real_data: Path) -> None:
    """Five real CamVid val frames + labels → bag → the same pixels and labels back."""
    frames, labels = real_data / 'camvid' / 'val', real_data / 'camvid' / 'valannot'
    expected = list(open_labelled(frames, labels=labels, max_frames=5))
    for storage in ('mcap', 'sqlite3'):
        summary = write_bag(tmp_path / storage, iter(expected), storage=storage)
        assert summary['frames'] == 5 and summary['duration'] == pytest.approx(4 / 15)
        got = list(open_labelled(tmp_path / storage))
        assert len(got) == 5
        for (frame, label), (orig, orig_label) in zip(got, expected, strict=False):
            assert frame.size == (480, 360)
            np.testing.assert_array_equal(frame.image, orig.image)
            np.testing.assert_array_equal(label, orig_label)
