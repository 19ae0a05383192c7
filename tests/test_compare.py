"""Comparisons (seg.analysis, seg.apis.compare): names from the registries, exact params / FLOPs,
metrics read from work dirs (never recomputed), statistics over seeds, and a trained comparison end to
end on a tiny folder dataset."""
import csv
import json
import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from seg.registry import MODELS

from .conftest import ROOT


def _compare(specs, **settings):
    from seg.apis.compare import CompareSettings, run_comparison, write_report

    out = settings.pop('out_dir', None)
    result = run_comparison(specs, CompareSettings(configs_dir=f'{ROOT}/configs', out_dir=out, **settings))
    if out:
        write_report(result, out)
    return result


def _read_csv(path):
    with open(path) as f:
        return {row['model']: row for row in csv.DictReader(f)}


def _non_blank(path, min_hw=(50, 50)):
    img = cv2.imread(str(path))
    assert img is not None, path
    assert img.shape[0] >= min_hw[0] and img.shape[1] >= min_hw[1], img.shape
    assert img.astype(np.float64).var() > 0, f'{path} is blank'
    return img


# ----------------------------------------------------------------------------------------- names
def test_every_registered_head_and_attention_module_has_a_name():
    import seg.models.heads as heads
    from seg.analysis.specs import available_models, parse_spec
    from seg.models.attention import list_attention

    names = available_models()
    registered = [c for c in heads.__all__ if c in MODELS.module_dict]
    assert {'FCNHead', 'CCHead', 'DAHead', 'NLHead', 'AttentionHead'} <= set(registered)
    for cls_name in registered:
        assert names[cls_name.lower()] == ('head', cls_name)
    # One name means one thing: every module of the zoo by its own name (nonlocal is the module,
    # which in a head is the Non-local head, NLHead's preset), except where mmsegmentation's head has
    # that name: then the name is the head (GCHead and DNLHead are the module in AttentionHead's shape;
    # EMAHead and ISAHead have their own), and the module plugs into a backbone by it.
    heads_by_short = {c.lower()[:-4]: c for c in registered if c.lower().endswith('head')}
    for attn in list_attention():
        expected = ('head', heads_by_short[attn]) if attn in heads_by_short else ('attention', attn)
        assert names[attn] == expected, attn
    assert {a for a in list_attention() if a in heads_by_short} == {'gc', 'dnl', 'ema', 'isa'}
    for alias, target in (('fcn', 'FCNHead'), ('ccnet', 'CCHead'), ('danet', 'DAHead'), ('nlhead', 'NLHead')):
        assert names[alias] == ('head', target)
    assert names['nonlocal'] == ('attention', 'nonlocal')

    spec = parse_spec('ccnet:recurrence=1')
    assert (spec.kind, spec.name, spec.options) == ('head', 'CCHead', {'recurrence': 1})
    spec = parse_spec('cbam:reduction=8,spatial_kernel=3')
    assert (spec.kind, spec.name, spec.options) == ('attention', 'cbam', {'reduction': 8, 'spatial_kernel': 3})
    with pytest.raises(ValueError, match=r"unknown model 'ccnett'.*ccnet.*se"):
        parse_spec('ccnett')
    with pytest.raises(ValueError, match='key=value'):
        parse_spec('ccnet:recurrence')
    with pytest.raises(FileNotFoundError, match='nope.py'):
        parse_spec('configs/nope.py')


def _skeleton(backbone):
    from seg.models.factory import backbone_skeleton

    return backbone_skeleton(backbone)


def test_every_name_builds_on_a_backbone_preset_without_extra_code():
    from mmengine.config import Config

    from seg.analysis.specs import available_models, parse_spec, spec_model
    from seg.apis.model_io import build_model

    targets = {}
    for name, (kind, target) in available_models().items():
        targets.setdefault((kind, target), name)
    x = torch.zeros(1, 3, 32, 32)
    r18, demo = _skeleton('r18'), _skeleton('demo')
    for (kind, target), name in sorted(targets.items()):
        model_cfg = spec_model(parse_spec(name), r18, 'r18')
        model = build_model(Config(dict(model=model_cfg))).eval()
        with torch.no_grad():
            assert model(x).shape == (1, 19, 32, 32), name
        if target == 'DAHead':  # every extra training output is supervised
            assert model_cfg['loss_weights'] == {'out': 1.0, 'aux': 0.4, 'pam': 1.0, 'cam': 1.0}
        if kind == 'attention':
            assert model_cfg['decode_head']['attention'] == {'type': target}
        # every name also builds on the demo network (width 32: ShuffleAttention takes 16 groups)
        build_model(Config(dict(model=spec_model(parse_spec(name), demo, 'demo'))))
    with pytest.raises(ValueError, match=r"CCHead has no option\(s\) recurence.*recurrence"):
        spec_model(parse_spec('ccnet:recurence=1'), demo, 'demo')
    with pytest.raises(ValueError, match=r"'shuffle:groups=64' cannot be built on the 'demo' backbone .*groups"):
        spec_model(parse_spec('shuffle:groups=64'), demo, 'demo')


# ------------------------------------------------------------------------------- exact numbers
@MODELS.register_module(name='CompareTestStem', force=True)
class CompareTestStem(nn.Module):
    """One bias-free 3x3 convolution, stride 4: a backbone whose cost is easy to count by hand."""

    def __init__(self, channels: int = 4, pretrained=None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, stride=4, padding=1, bias=False)

    def forward(self, x):
        return [self.conv(x)]


TINY_MODEL = """
model = dict(type='EncoderDecoder', num_classes=3,
             backbone=dict(type='CompareTestStem', channels=4),
             decode_head={head}, loss=dict(type='CrossEntropyLoss', ignore_index=255))
"""


def test_params_and_flops_equal_hand_computed_values(tmp_path):
    fcn = tmp_path / 'tiny_fcn.py'
    fcn.write_text(TINY_MODEL.format(head="dict(type='FCNHead', in_channels=4, channels=4, num_classes=3, "
                                          "num_convs=1, concat_input=False, in_index=0, dropout=0.0)"))
    cc = tmp_path / 'tiny_cc.py'
    cc.write_text(TINY_MODEL.format(head="dict(type='CCHead', in_channels=4, channels=8, num_classes=3, "
                                         "recurrence=2, reduction=4, in_index=0, dropout=0.0)"))
    out = tmp_path / 'out'
    _compare([str(fcn), str(cc)], size=(32, 32), warmup=0, repeat=1,
             work_dirs=[str(tmp_path / 'none1'), str(tmp_path / 'none2')], out_dir=str(out))
    rows = _read_csv(out / 'compare.csv')

    # Input 32x32, stride 4 -> an 8x8 feature map (64 pixels). FLOPs = 2 per multiply-add.
    n = 8 * 8
    stem_params, stem_flops = 4 * 3 * 9, 2 * n * 4 * 3 * 9
    # FCN head: conv 3x3 4->4 (no bias) + BN(4) + 1x1 classifier 4->3 with bias.
    fcn_params = 4 * 4 * 9 + 2 * 4 + (4 * 3 + 3)
    fcn_flops = 2 * n * 4 * 4 * 9 + 2 * n * 3 * 4
    row = rows['tiny_fcn']
    assert int(row['head_params']) == fcn_params == 167
    assert int(row['params']) == stem_params + fcn_params == 275
    assert int(row['head_flops']) == fcn_flops == 19968
    assert int(row['flops']) == stem_flops + fcn_flops == 33792

    # CCHead (width 8, q/k width 8 // 4 = 2, R = 2 passes sharing weights):
    # conv_in 3x3 4->8 + BN, criss-cross (q 8->2, k 8->2, v 8->8 1x1 convs with bias, gamma),
    # conv_out 3x3 8->8 + BN, bottleneck 3x3 (4+8)->8 + BN, classifier 8->3.
    cc_params = (4 * 8 * 9 + 16) + (18 + 18 + 72 + 1) + (8 * 8 * 9 + 16) + (12 * 8 * 9 + 16) + (8 * 3 + 3)
    # One pass: the q, k, v projections, then each pixel's H + W logits (q . k over 2 channels) and
    # the weighted sum of its H + W values (8 channels).
    h = w = 8
    cc_pass = 2 * n * 8 * (2 + 2 + 8) + 2 * n * 2 * (h + w) + 2 * n * 8 * (h + w)
    cc_flops = 2 * n * 8 * 4 * 9 + 2 * cc_pass + 2 * n * 8 * 8 * 9 + 2 * n * 8 * 12 * 9 + 2 * n * 3 * 8
    row = rows['tiny_cc']
    assert int(row['head_params']) == cc_params == 1912
    assert int(row['params']) == stem_params + cc_params
    assert int(row['head_flops']) == cc_flops == 289792
    assert int(row['flops']) == stem_flops + cc_flops
    for row in rows.values():
        assert float(row['forward_ms']) > 0 and float(row['train_ms']) > 0
        assert int(row['forward_peak_bytes']) > 0 and int(row['train_peak_bytes']) > int(row['forward_peak_bytes'])
        assert row['mIoU'] == '' and row['metrics_source'] == ''  # never trained: blank, not invented

    md = (out / 'report.md').read_text()
    assert 'FLOPs @1x3x32x32' in md and '| tiny_fcn | 275 | 167 | 33.79 K | 19.97 K |' in md
    assert 'mIoU' not in md.split('\n')[0]
    _non_blank(out / 'miou_latency.png')


def test_flops_of_attention_paths_agree_and_cpu_flash_attention_is_counted():
    from seg.analysis.measure import count_flops
    from seg.ops import criss_cross_attention, position_attention_chunked, position_attention_sdpa

    q, v = torch.randn(1, 4, 6, 10), torch.randn(1, 4, 6, 10)
    n = 6 * 10
    # softmax(q k^T) v over all N pixels: N x N logits of width 4, N x N weights times width-4 values.
    assert count_flops(lambda: position_attention_sdpa(q, q, v)) == 2 * n * n * 4 * 2
    assert count_flops(lambda: position_attention_chunked(q, q, v)) == 2 * n * n * 4 * 2
    # Criss-cross: each pixel against the H + W pixels of its row and column (itself twice, one masked).
    assert count_flops(lambda: criss_cross_attention(q, q, v)) == 2 * n * (6 + 10) * 4 * 2


def test_metrics_are_read_from_work_dirs_not_invented(tmp_path):
    from seg.analysis.results import read_run_metrics

    assert read_run_metrics(tmp_path / 'missing') is None
    work = tmp_path / 'run'
    (work / '20260101_000000' / 'vis_data').mkdir(parents=True)
    lines = [dict(lr=0.01, loss=1.0, step=2), dict(aAcc=80.0, mIoU=40.0, mAcc=50.0, **{'IoU.road': 70.0}, step=2),
             dict(aAcc=90.0, mIoU=60.0, mAcc=70.0, **{'IoU.road': 80.0, 'IoU.bus_lane': 10.0}, step=4),
             dict(aAcc=85.0, mIoU=55.0, mAcc=65.0, step=6)]
    (work / '20260101_000000' / 'vis_data' / 'scalars.json').write_text('\n'.join(map(json.dumps, lines)) + '\n')
    got = read_run_metrics(work)
    assert (got.miou, got.aacc) == (55.0, 85.0) and 'last validation, step 6' in got.source
    (work / 'best_mIoU_iter_4.pth').write_bytes(b'')
    got = read_run_metrics(work)
    assert (got.miou, got.macc, got.aacc) == (60.0, 70.0, 90.0)
    assert got.class_iou == {'road': 80.0, 'bus_lane': 10.0} and 'best checkpoint, step 4' in got.source
    (work / 'metrics.json').write_text(json.dumps(dict(metrics={'aAcc': 91.0, 'mIoU': 61.5, 'mAcc': 71.0,
                                                                 'IoU.road': 81.0, 'IoU.bus_lane': math.nan})))
    got = read_run_metrics(work)
    assert got.miou == 61.5 and got.source.endswith('metrics.json') and math.isnan(got.class_iou['bus_lane'])




@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_precision_reaches_training_evaluation_and_timing(precision):
    from mmengine.config import Config

    from seg.analysis.profile import profile_segmentor
    from seg.apis.compare import CompareSettings, training_config
    from seg.apis.model_io import build_model
    from seg.engine.config import load_config
    from seg.engine.precision import resolve_precision

    settings = CompareSettings(configs_dir=f'{ROOT}/configs', precision=precision)
    base = load_config(f'{ROOT}/configs/demo_ccnet.py')
    cfg = training_config(base, base.model.to_dict(), settings, seed=0)
    assert (cfg.precision, cfg.channels_last) == (precision, 'auto')  # what train() and evaluate() get

    chosen = resolve_precision(precision, 'cpu', 'auto')
    model = build_model(Config(dict(model=base.model.to_dict())))
    seen = []
    conv = model.decode_head.cls  # the classifier, a 1x1 conv
    conv.register_forward_hook(lambda m, i, o: seen.append(
        (m.training, o.dtype, o.is_contiguous(memory_format=torch.channels_last))))
    report = profile_segmentor(model, (32, 64), 'cpu', 2, 0, 1, chosen)  # its fast copy keeps the hook
    assert report.forward_ms > 0 and report.train_ms > 0
    want = torch.bfloat16 if precision == 'bf16' else torch.float32
    train = [s for s in seen if s[0]]
    assert train and all(d == want and cl == chosen.channels_last for _, d, cl in train)
    assert any(d == want and cl == chosen.channels_last for t, d, cl in seen if not t)  # the timed forward


def test_every_context_head_is_timed_in_bf16():
    # The training step runs its forward under autocast and its backward outside it, as training
    # does (the chunked PAM backward accumulates in float32, which autocast around it would break).
    result = _compare(['fcn', 'ccnet', 'danet', 'nonlocal'], size=(32, 64), warmup=0, repeat=1, precision='bf16')
    for m in result.models:
        assert m.cost.forward_ms > 0 and m.cost.train_ms > 0, m.spec.label
    assert any('precision bf16' in n for n in result.notes)
