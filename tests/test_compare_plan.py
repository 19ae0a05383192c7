"""A comparison's runs as jobs: plan 2 models x 2 seeds, execute 2 at a time, collect -- equal to the same
comparison run sequentially; a killed run is reported unfinished and joins once finished; a failing run
does not stop the others; --backbone r50 starts from the ImageNet weights it finds."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from seg.apis.compare import CompareSettings, LaunchSettings, collect_comparison, run_comparison

from .conftest import ROOT
from .test_compare_seeds import DATA, check_two_models_two_seeds_then_nothing_to_train, write_folder_dataset

pytestmark = pytest.mark.slow

MODELS = ['fcn', 'ccnet:recurrence=1']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('plan_data')
    write_folder_dataset(tmp / 'camvid', np.random.default_rng(0))
    path = tmp / 'my_data.py'
    path.write_text(DATA.format(classes=[f'c{i}' for i in range(11)], root=tmp / 'camvid'))
    return str(path)


def settings_for(data, out, **kw):
    base = dict(configs_dir=f'{ROOT}/configs', data=data, iters=4, seeds=2, train_batch_size=2, size=(32, 48),
                warmup=0, repeat=1, num_workers=0, out_dir=str(out), bootstrap=50, checkpoint_interval=2,
                precision='fp32')
    base.update(kw)
    return CompareSettings(**base)


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def test_plan_then_two_jobs_at_once_then_collect_equals_the_sequential_comparison(data, tmp_path):
    planned = tmp_path / 'planned'
    assert run_comparison(MODELS, settings_for(data, planned, plan_only=True), log=lambda m: None) is None
    script = (planned / 'plan.sh').read_text()
    assert script.count('tools/train.py') == 8  # each run: its command and its torchrun form
    assert script.count('--resume') == 8 and 'torch.distributed.run --nproc_per_node=4' in script
    config = json.loads((planned / 'runs' / 'fcn' / 'seed1' / 'config.json').read_text())
    assert config['randomness']['seed'] == 1 and config['model']['num_classes'] == 11
    assert not list(planned.glob('runs/*/seed*/*.pth'))  # planned, nothing trained

    from seg.apis.compare_jobs import execute_plan

    log = []
    states = execute_plan(planned, LaunchSettings(parallel=2, threads=1), log=log.append)
    assert set(states.values()) == {'done'} and '2 at a time' in log[0]
    parallel = collect_comparison(planned, log=lambda m: None)

    seq_settings = settings_for(data, tmp_path / 'seq', train=True, launch=LaunchSettings(parallel=1, threads=1))
    sequential = run_comparison(MODELS, seq_settings, log=lambda m: None)
    check_two_models_two_seeds_then_nothing_to_train(sequential, seq_settings)
    for a, b in zip(parallel.models, sequential.models):
        assert a.spec.label == b.spec.label and len(a.runs) == len(b.runs) == 2
        assert [r.metrics.miou for r in a.runs] == [r.metrics.miou for r in b.runs]
        for ra, rb in zip(a.runs, b.runs):
            wa = weights(os.path.join(ra.work_dir, 'iter_4.pth'))
            wb = weights(os.path.join(rb.work_dir, 'iter_4.pth'))
            assert all(torch.equal(wa[k], wb[k]) for k in wa)
            assert ra.costs['train_s_per_iter'] > 0 and ra.costs['train_peak_rss_mib'] > 100
            assert ra.costs['eval_images_per_second'] > 0
    assert parallel.models[1].difference.mean == sequential.models[1].difference.mean
    # beyond mIoU: boundary IoU and object recall by size, over the seeds and against the baseline
    from seg.analysis.report import to_markdown

    assert set(parallel.models[0].region_summary) == {'bIoU', 'recall.small', 'recall.medium', 'recall.large',
                                                      'sizeIoU.small', 'sizeIoU.medium', 'sizeIoU.large',
                                                      'ERF radius_50', 'ERF radius_95'}
    erf = json.loads(open(os.path.join(parallel.models[0].runs[0].work_dir, 'erf.json')).read())
    assert erf['images'] == 3 and erf['size'] == [32, 48] and 0 < erf['radius_50'] <= erf['radius_95'] <= 24
    diff = parallel.models[1].region_difference['bIoU']
    assert diff.verdict == 'too few seeds' and len(diff.per_seed) == 2
    assert diff.mean == sequential.models[1].region_difference['bIoU'].mean
    assert 'bIoU (mean ± std)' in to_markdown(parallel)
    # what the criss-cross attention attends to, per pass and composed; FCN has no attention module
    cc = parallel.models[1].attention_summary
    assert cc and all(0 <= v['same_class_mass'].mean <= 1 and 0 <= v['entropy'].mean <= 1 for v in cc.values())
    assert not parallel.models[0].attention_summary and 'same-class mass' in to_markdown(parallel)
    # ... and at which distance: the mass of every bucket adds up to the row's (1), over the seeds
    by_distance = parallel.models[1].attention_by_distance
    assert set(by_distance) == set(cc) and 'mass 0-4 px' in to_markdown(parallel)
    for stats in by_distance.values():
        assert stats['distance_edges'] == (0.0, 4.0, 16.0, 64.0, float('inf')) and stats['runs'] == 2
        assert sum(iv.mean for iv in stats['mass_by_distance']) == pytest.approx(1.0)
    assert 'sizeIoU.small' in parallel.models[1].region_difference
    from seg.apis.compare import write_report

    paths = write_report(parallel, str(tmp_path / 'report'))
    assert all(os.path.getsize(paths[k]) > 0 for k in ('trimap', 'differences', 'erf'))
    assert parallel.schedule['iters'] == 4 and parallel.schedule['pretrained'] == 'none (from scratch)'


def test_a_killed_run_is_unfinished_until_it_finishes_and_a_failing_run_stops_nothing(data, tmp_path):
    from seg.apis.compare_jobs import execute_plan

    out = tmp_path / 'cmp'
    run_comparison(MODELS, settings_for(data, out, plan_only=True, iters=6), log=lambda m: None)
    victim = out / 'runs' / 'fcn' / 'seed0'
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    with open(victim / 'train.log', 'w') as log:
        proc = subprocess.Popen([sys.executable, 'tools/train.py', str(victim / 'config.json'), '--work-dir',
                                 str(victim), '--resume'], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not (victim / 'iter_2.pth').exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    broken = out / 'runs' / 'ccnet_recurrence-1' / 'seed1'
    config = json.loads((broken / 'config.json').read_text())
    config['model']['decode_head']['recurence'] = 1  # a typo: this run fails at start-up
    (broken / 'config.json').write_text(json.dumps(config))

    states = execute_plan(out, LaunchSettings(parallel=2, threads=1), log=lambda m: None)
    assert states[str(broken)] == 'failed' and list(states.values()).count('done') == 3
    status = json.loads((broken / 'status.json').read_text())
    assert status['exit_code'] != 0
    result = collect_comparison(out, log=lambda m: None)
    note = next(n for n in result.notes if '`ccnet:recurrence=1` seed 1: failed' in n)
    assert 'recurence' in note  # its last log line names the bad key
    assert [len(m.runs) for m in result.models] == [2, 1]

    # the killed run: unfinished while only its first checkpoint exists
    os.remove(victim / 'iter_6.pth')
    (victim / 'metrics.json').unlink()
    result = collect_comparison(out, log=lambda m: None)
    assert any('`fcn` seed 0: unfinished' in n for n in result.notes) and len(result.models[0].runs) == 1
    config['model']['decode_head'].pop('recurence')
    (broken / 'config.json').write_text(json.dumps(config))
    execute_plan(out, LaunchSettings(parallel=2, threads=1), log=lambda m: None)  # resumes / reruns both
    result = collect_comparison(out, log=lambda m: None)
    assert [len(m.runs) for m in result.models] == [2, 2] and not any('unfinished' in n for n in result.notes)

    # collected again: nothing recomputed; an analysis of an older layout, or older than its checkpoint, is
    from seg.apis.model_analysis import ANALYSIS_FORMAT

    done = out / 'runs' / 'fcn' / 'seed1'
    record = json.loads((done / 'run.json').read_text())
    assert record['analyses'] == {'erf': ANALYSIS_FORMAT, 'attention': ANALYSIS_FORMAT}
    stamp = {name: (done / name).stat().st_mtime_ns for name in ('metrics.json', 'erf.json', 'attention.json')}
    messages = []
    collect_comparison(out, log=messages.append)
    assert not any('evaluating' in m for m in messages)
    assert stamp == {name: (done / name).stat().st_mtime_ns for name in stamp}
    record['analyses']['attention'] = ANALYSIS_FORMAT - 1
    (done / 'run.json').write_text(json.dumps(record))
    collect_comparison(out, log=lambda m: None)
    assert (done / 'attention.json').stat().st_mtime_ns > stamp['attention.json']
    assert (done / 'metrics.json').stat().st_mtime_ns == stamp['metrics.json']
    assert json.loads((done / 'run.json').read_text())['analyses']['attention'] == ANALYSIS_FORMAT
    os.utime(done / 'iter_6.pth')  # trained again in place: evaluated again
    messages = []
    collect_comparison(out, log=messages.append)
    assert any('evaluating fcn seed 1' in m for m in messages)


def test_backbone_r50_starts_from_the_imagenet_weights_it_finds(data, tmp_path, monkeypatch):
    from seg.engine.config import load_config
    from seg.models.factory import backbone_skeleton
    from seg.registry import MODELS

    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    with pytest.raises(RuntimeError, match='resnet50_v1c'):  # offline without the file: it stops before any run
        run_comparison(['fcn'], settings_for(data, tmp_path / 'none', plan_only=True, backbone='r50', seeds=1),
                       log=lambda m: None)
    skeleton = backbone_skeleton('r50')
    skeleton['backbone']['pretrained'] = None
    imagenet = MODELS.build(skeleton['backbone']).state_dict()
    os.makedirs(tmp_path / 'hub' / 'checkpoints', exist_ok=True)
    torch.save(imagenet, tmp_path / 'hub' / 'checkpoints' / 'resnet50_v1c-2cccc1ad.pth')
    out = tmp_path / 'r50'
    run_comparison(['ccnet'], settings_for(data, out, plan_only=True, backbone='r50', seeds=1), log=lambda m: None)
    plan = json.loads((out / 'plan.json').read_text())
    assert plan['schedule']['pretrained'] == 'open-mmlab://resnet50_v1c'
    cfg = load_config(str(out / 'runs' / 'ccnet' / 'seed0' / 'config.json'))
    model = MODELS.build(cfg.model)  # as tools/train.py builds it
    assert torch.equal(model.backbone.layer4[2].conv3.weight, imagenet['layer4.2.conv3.weight'])


def test_the_slurm_array_script_trains_the_run_of_its_index(data, tmp_path):
    """tools/slurm_compare.sh under stand-ins for srun and scontrol: array task 1 trains run 1 of the plan
    (through tools/slurm_train.sh: torchrun, --resume), and collect then reports the others unfinished."""
    from .test_preemption import slurm_stand_ins

    bin_dir = slurm_stand_ins(tmp_path)
    out = tmp_path / 'cmp'
    run_comparison(['fcn'], settings_for(data, out, plan_only=True, iters=2), log=lambda m: None)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               SLURM_JOB_ID='12', SLURM_ARRAY_TASK_ID='1', SLURM_JOB_NODELIST='n1', SLURM_NNODES='1',
               GPUS_PER_NODE='1', PORT='29561', PYTHON=sys.executable, REQUEUED=str(tmp_path / 'requeued'))
    proc = subprocess.run(['bash', os.path.join(ROOT, 'tools', 'slurm_compare.sh'), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (out / 'runs' / 'fcn' / 'seed1' / 'iter_2.pth').is_file()
    assert not (out / 'runs' / 'fcn' / 'seed0' / 'iter_2.pth').exists()
    result = collect_comparison(out, log=lambda m: None)
    assert [r.seed for r in result.models[0].runs] == [1]
    assert any('`fcn` seed 0: unfinished' in n for n in result.notes)


def test_published_results_are_read_from_the_readmes_and_shown_beside_the_measured(tmp_path):
    from seg.analysis.comparison import Comparison, ModelResult, Run
    from seg.analysis.profile import CostReport
    from seg.analysis.report import to_json, to_markdown
    from seg.analysis.results import RunMetrics, published_for, published_results
    from seg.analysis.specs import ModelSpec

    recipe = 'configs/ccnet/ccnet_r50-d8_4xb2-80k_cityscapes-512x1024.py'
    table = published_results(f'{ROOT}/configs')
    fcn = published_for('fcn', recipe, table)
    assert fcn['mIoU'] == 73.61 and 'fcn_r50-d8_512x1024_80k_cityscapes' in fcn['url']
    assert published_for('danet', recipe, table)['mIoU'] == 79.34
    assert published_for('se', recipe, table) is None  # no published run: nothing invented
    runs = [Run(s, None, RunMetrics(70.0 + s, 80.0, 90.0, {}, 'x'), costs={'train_s_per_iter': 0.5 + s})
            for s in range(3)]
    cost = CostReport(params=1, head_params=1, flops=1, head_flops=1, input_size=(8, 8))
    model = ModelResult(ModelSpec('fcn', 'head', 'FCNHead'), cost, runs, published=fcn)
    from seg.analysis.comparison import summarize

    summarize(model, [])
    result = Comparison(models=[model], size=(8, 8), batch=1, device='cpu', threads=1, backbone='r50', classes=[])
    text = to_markdown(result)
    assert '| published mIoU (gap) |' in text and '73.61 (-2.61)' in text  # measured 71.00: the gap is shown
    assert 's / train iter' in text and '1.500' in text
    assert to_json(result)['models'][0]['published']['mIoU'] == 73.61
