"""The CPU demo end to end: generate the synthetic data, train the demo CCNet, evaluate, infer.

python tools/demo.py [--config configs/demo_ccnet.py] [--work-dir work_dirs/demo_ccnet]
"""
import argparse

from mmengine.config import DictAction

from seg.apis.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default='configs/demo_ccnet.py')
    parser.add_argument('--work-dir', default=None)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args()
    run_demo(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options)


if __name__ == '__main__':
    main()
