"""The panels of the static figures and of the explorer: scales, titles, nearest-neighbour cells, the point
marker, the figure's size."""
import cv2
import numpy as np
import pytest

from seg.visualization.panels import (
    LOG_DECADES,
    PANEL_PX,
    Panel,
    choose_scale,
    image_panel,
    map_panel,
    panel_figure,
    prediction_panel,
    render_panel,
)


def _decode(png: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_scale_follows_the_span_of_the_weights():
    uniform = np.full((4, 8), 1 / 32)
    assert choose_scale(uniform).name == 'linear'
    assert choose_scale(np.linspace(0.01, 0.9, 32).reshape(4, 8)).describe() == 'linear scale'
    assert choose_scale(np.linspace(0.01, 0.9, 32).reshape(4, 8), power=0.5).describe() == 'power 0.5 scale'
    spread = np.logspace(-9, 0, 32).reshape(4, 8)  # softmax weights spanning nine orders of magnitude
    log = choose_scale(spread, power=0.5)  # the span wins over the module's power
    assert log.name == 'log' and log.vmax == 1.0 and log.vmin == pytest.approx(10.0 ** -LOG_DECADES)
    assert log.describe() == f'log scale ({LOG_DECADES} decades)'
    cross = np.zeros((4, 8))
    cross[2, :], cross[:, 3] = 1e-5, 1e-5
    cross[2, 3] = 0.5
    assert choose_scale(cross).name == 'log'  # zeros off the cross do not count
    signed = np.linspace(-1, 1, 32).reshape(4, 8)
    assert choose_scale(signed).name == 'linear' and choose_scale(signed).vmin == -1.0
    assert choose_scale(np.full((2, 2), np.nan)).name == 'linear'


def test_map_panel_draws_cells_nearest_neighbour_with_title_and_colour_bar():
    image = np.full((60, 120, 3), 128, np.uint8)
    values = np.zeros((2, 4), np.float32)
    values[0, 0] = 1.0  # one hot cell: the top-left eighth of the image
    panel = map_panel(image, values, (60.0, 120.0), 'head.context [criss_cross] pass1 | point (10, 5)\nweights',
                      point=None, info=dict(module='head.context'))
    assert panel.title.endswith('linear scale') and panel.info['resolution'] == [2, 4]
    assert panel.info['max'] == 1.0 and len(panel.info['checksum']) == 12
    png = _decode(render_panel(panel))
    assert png.shape[1] == PANEL_PX
    # The hot cell is one flat colour with a sharp edge (no smoothing between cells).
    region = png.astype(int)
    gray = np.abs(region[..., 0] - region[..., 2])  # turbo's red end differs most from its blue end
    hot = gray > 40
    ys, xs = np.nonzero(hot[:, : int(PANEL_PX * 0.8)])
    assert ys.size > 1000
    block = region[ys.min() + 3:ys.max() - 2, xs.min() + 3:xs.max() - 2]
    assert np.ptp(block.reshape(-1, 3), axis=0).max() <= 2  # flat inside the cell
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert width == pytest.approx(height, abs=2) and width > 150  # a 30x30 px cell of the image, enlarged alike
    jpeg = _decode(render_panel(panel, 'jpeg'))
    assert jpeg.shape == png.shape
    with pytest.raises(ValueError, match='format'):
        render_panel(panel, 'gif')


def test_point_marker_is_visible_on_any_colour():
    for colour in (0, 255):
        image = np.full((96, 192, 3), colour, np.uint8)
        png = _decode(render_panel(image_panel(image, 'input | point (96, 48)', (96, 48))))
        # Ring marks of the opposite colour around the point's place in the panel (the middle of the axes).
        axes = png[int(png.shape[0] * 0.15):, : int(PANEL_PX * 0.85)]
        diff = np.abs(axes.astype(int) - colour).sum(-1) > 200
        assert diff.sum() > 150, colour


def test_panel_figure_grid_and_legend(tmp_path):
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, 32:] = 200
    pred = np.zeros((32, 64), np.int64)
    pred[:, 32:] = 2
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    pp = prediction_panel(image, pred, palette, ['road', 'grass', 'sky'], (40, 10))
    assert [n for n, _ in pp.legend] == ['road', 'sky'] and pp.title.endswith('sky')
    bars = Panel('gate: channel weights', 'channel', values=np.linspace(0, 1, 40))
    branch = Panel('sk: branch weights', 'branch', values=np.random.default_rng(0).random((2, 16)))
    path = panel_figure([image_panel(image, 'input', (40, 10)), pp, bars, branch], tmp_path / 'f.png', columns=2,
                        title='fig')
    fig = cv2.imread(str(path))
    assert fig.shape[1] == 2 * PANEL_PX and fig.shape[0] > 400
    assert _decode(panel_figure([None, bars], columns=2)).shape[1] == 2 * PANEL_PX
    with pytest.raises(ValueError, match='at least one panel'):
        panel_figure([], columns=2)
