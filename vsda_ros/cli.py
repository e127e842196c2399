"""The ``vsda`` command (also ``python -m vsda_ros``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = ('Real data and weights are looked up in VSDA_DATA_DIR (default ../shared/data), '
          'downloads go to VSDA_CACHE_DIR (default ~/.cache/vsda_ros).')


def _cmd_segment(args: argparse.Namespace) -> int:
    from vsda_ros.inference import parse_size
    from vsda_ros.segment import SegmentConfig, run_segment

    cfg = SegmentConfig(
        model=args.model, input=Path(args.input), out=Path(args.out).resolve(),
        size=parse_size(args.size), device=args.device,
        labels=Path(args.labels) if args.labels else None, label_map=args.map,
        json_path=Path(args.json) if args.json else Path(args.out) / 'summary.json',
        write_overlay=not args.no_overlay, alpha=args.alpha, max_frames=args.max_frames,
        progress=not args.quiet, topic=args.topic, allow_truncated=args.allow_truncated,
        backend=args.backend, precision=args.precision)
    s = run_segment(cfg)
    lat = s['latency_ms']
    print(f"segmented {s['frames']} frames with {s['model']} at {s['input_size'][0]}x"
          f"{s['input_size'][1]} on {s['device']} ({s['backend']} {s['precision']}): "
          f"latency p50 {lat['p50']:.1f} ms, "
          f"p95 {lat['p95']:.1f} ms")
    if 'miou' in s:
        print(f"mIoU {s['miou']:.2f} % over {len(s['per_class_iou'])} classes"
              + (f" (mapped {s['label_map']})" if s['label_map'] else ''))
        for name, v in s['per_class_iou'].items():
            print(f'  {name:>14s} ' + ('   n/a' if v is None else f'{v:6.2f}'))
    print(f"label masks: {cfg.out / 'labels'}\ncolour masks: {cfg.out / 'color'}")
    if cfg.write_overlay:
        print(f"overlay video: {cfg.out / 'overlay.mp4'}\n"
              f"overlay strip: {cfg.out / 'overlay_strip.png'}")
    print(f'summary: {cfg.json_path}')
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from vsda_ros.fetch import fetch_file
    from vsda_ros.models.zoo import ZOO
    from vsda_ros.paths import cache_dir

    names = list(ZOO) if args.name == 'all' else [args.name]
    for name in names:
        entry = ZOO[name]
        url = (args.base_url.rstrip('/') + '/weights/' + entry.filename) if args.base_url \
            else entry.url
        path = fetch_file(url, cache_dir() / 'weights' / entry.filename, entry.sha256,
                          progress=not args.quiet)
        print(f'{name}: {path} (sha256 ok)')
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.target == 'model':
        return _bench_model(args)
    from vsda_ros.ros.bench_node import main_cli  # imports rclpy: only for this subcommand
    return main_cli(args)


def _bench_model(args: argparse.Namespace) -> int:
    import contextlib

    from vsda_ros.evaluation.bench_model import (BenchModelConfig, format_table,
                                                 run_bench_model, write_json)
    from vsda_ros.inference import parse_size

    cfg = BenchModelConfig(
        model=args.model, size=parse_size(args.size or None),
        backends=tuple((args.backend or 'torch,openvino,onnxruntime').split(',')),
        precisions=tuple((args.precision or 'fp32,bf16,int8').split(',')),
        rounds=args.rounds, warmup=max(1, int(args.warmup)), source=args.source,
        labels=args.labels, label_map=args.map, max_frames=args.max_frames)
    to_stdout = args.json == '-'
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        report = run_bench_model(cfg)
        print(format_table(report))
    if args.json:
        write_json(report, args.json)
        if not to_stdout:
            print(f'report: {args.json}')
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from vsda_ros.inference import parse_size
    from vsda_ros.inference.export import ExportConfig, run_export

    fmt = ('onnx', 'openvino') if args.format == 'openvino' else ('onnx',)
    cfg = ExportConfig(model=args.model, out=Path(args.out), size=parse_size(args.size),
                       formats=fmt, precisions=tuple(args.precision.split(',')),
                       calibrate=args.calibrate, calibrate_frames=args.calibrate_frames,
                       topic=args.topic, validate=args.validate, labels=args.labels,
                       label_map=args.map, validate_frames=args.validate_frames,
                       progress=not args.quiet)
    run_export(cfg)
    return 0


def _print_demo_run(s: dict) -> None:
    d = s['diagnostics'] or {}
    keys = ''
    if s.get('strategy') == 'keyframe' and d.get('processed') not in (None, '0'):
        keys = f", keyframes {d.get('keyframes')} of {d.get('processed')}"
    print(f"segmentation_node ({s['model']}, {s.get('strategy', 'per_frame')}): {s['frames']} "
          'frames over ROS 2' + (f"; mIoU {s['miou']:.2f} %" if 'miou' in s else '')
          + (f"; inference p50 {d.get('inference_p50_ms')} ms" if d else '') + keys
          + f" -> {s['out']}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from vsda_ros.paths import data_dir
    from vsda_ros.ros.demo import run_demo, run_demo_suite  # import rclpy: only for the demo

    ddir = data_dir()
    frames = Path(args.frames) if args.frames else (ddir or Path('.')) / 'camvid' / 'val'
    labels = Path(args.labels) if args.labels else (
        None if args.frames else (ddir or Path('.')) / 'camvid' / 'valannot')
    labels = labels if labels and labels.is_dir() else None
    out = Path(args.out).resolve()
    if args.model is None:  # the default demo: source vs adapted, and trained keyframes
        suite = run_demo_suite(frames, labels, out, args.size)
        for s in suite['runs'].values():
            _print_demo_run(s)
        print(f"source vs adapted, side by side: {suite['source_vs_adapted']}\n"
              f"each run's colour masks, overlays, label masks, node log and summary: "
              f"{out}/<run>/\nsummary: {out / 'summary.json'}")
        return 0
    s = run_demo(args.model, frames, out, labels, args.map, args.size, args.strategy)
    _print_demo_run(s)
    print(f"colour masks: {out / 'color'}\noverlays: {out / 'overlay'}\n"
          f"overlay strip: {out / 'overlay_strip.png'}\nlabel masks: {out / 'labels'}\n"
          f"summary + diagnostics: {out / 'summary.json'}\nnode log: {out / 'node.log'}")
    return 0


def _cmd_adapt(args: argparse.Namespace) -> int:
    from vsda_ros.adaptation.config import AdaptConfig
    from vsda_ros.adaptation.train import train

    overrides = {'recipe': args.recipe, 'model': args.model, 'target': args.target or None,
                 'source': args.source, 'source_labels': args.source_labels,
                 'source_map': args.source_map, 'train_base': args.train_base,
                 'freeze': args.freeze or None,
                 'out': args.out, 'iterations': args.iterations, 'batch': args.batch,
                 'lr': args.lr, 'seed': args.seed, 'threads': args.threads,
                 'device': args.device, 'val': args.val, 'val_labels': args.val_labels,
                 'label_map': args.map, 'eval_every': args.eval_every,
                 'fusion_init': args.fusion_init, 'fusion_num_deform': args.fusion_num_deform,
                 'fusion_stage': args.fusion_stage, 'folder_fps': args.folder_fps}
    if args.config:
        cfg = AdaptConfig.from_yaml(args.config, **overrides)
    else:
        cfg = AdaptConfig(**{k: v for k, v in overrides.items() if v is not None})
    s = train(cfg, progress=not args.quiet)
    if s.get('rank', 0) != 0:  # under torchrun only rank 0 reports
        return 0
    print(f"{s['recipe']}: {s['iterations']} iterations in {s['train_seconds']:.0f} s; "
          f"checkpoint {s['out']} (summary {s['out']}.json)")
    for e in s['evaluations']:
        print('  eval', {k: (round(v, 2) if isinstance(v, float) else v) for k, v in e.items()})
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from vsda_ros.evaluation.report import EvalConfig, run_eval, run_label

    cfg = EvalConfig(model=args.model, source=args.source, labels=args.labels,
                     label_map=args.map, strategies=args.strategy.split(','),
                     interval=args.interval, temporal_weights=args.temporal_weights,
                     size=args.size, device=args.device, fps=args.fps,
                     max_frames=args.max_frames, out=Path(args.out),
                     pda=args.pda, flow_preset=args.flow_preset,
                     keyframe_correction=args.keyframe_correction,
                     distortion_threshold=args.distortion_threshold, progress=not args.quiet,
                     topic=args.topic, weathers=args.weather, transients=args.transient,
                     weather_sweep=args.weather_sweep,
                     weather_temporal=not args.iid_weather, seed=args.seed,
                     live=args.live or bool(args.attach), rate=args.rate, attach=args.attach,
                     allow_truncated=args.allow_truncated, backend=args.backend,
                     precision=args.precision)
    runner = None
    if cfg.live:  # the ROS layer is injected here: the evaluation core never imports it
        from vsda_ros.ros.live_eval import LiveRunner  # imports rclpy when it runs
        runner = LiveRunner(cfg, cfg.intervals()[0], attach=cfg.attach)
    report = run_eval(cfg, runner)
    for run in report['runs']:
        lat = run['latency_ms']
        miou = f"mIoU {run['miou']:6.2f}  " if run.get('miou') is not None else ''
        ratio = (f" ({run['time_vs_per_frame']:.2f}× per_frame)"
                 if 'time_vs_per_frame' in run and run['strategy'] != 'per_frame' else '')
        dropped = f"  dropped {run['dropped']}" if run['dropped'] else ''
        print(f"{run_label(run):>10s} {run['strategy']:>10s}: {miou}agreement "
              f"{run['agreement']:6.2f}  TC {run['tc']:6.2f}  mean {run['mean_ms']:6.1f} ms/frame"
              f"{ratio}  latency p50 {lat['p50']:6.1f} p95 {lat['p95']:6.1f} ms  keyframes "
              f"{run['keyframe_ratio']:.2f}{dropped}{_hit_summary(run)}")
    if 'pda' in report:
        print('PDA mIoU by distance: ' + '  '.join(
            f"{name} " + ' '.join(f'{v:.1f}' for v in curve.values())
            for name, curve in report['pda'].items()))
        c = report['cost']
        print(f"cost (mean): key {c['key_ms_mean']:.1f} ms / {c['key_gflops']:.2f} GFLOPs, "
              f"non-key {c['nonkey_ms_mean']:.1f} ms / {c['nonkey_gflops']:.2f} GFLOPs "
              f"(time ratio {c['time_ratio']:.3f})")
    print(f'report: {cfg.out / "report.json"}, {cfg.out / "report.md"}; plots in {cfg.out}')
    return 0


def _hit_summary(run: dict) -> str:
    """For a transient run: '  hit 9/30 (mIoU hit 41.20, not hit 55.03)'; else ''."""
    if run.get('weather_mode') != 'transient':
        return ''
    scores = ''
    if 'miou_hit' in run:
        def f(v):
            return 'n/a' if v is None else f'{v:.2f}'
        scores = f" (mIoU hit {f(run['miou_hit'])}, not hit {f(run['miou_unhit'])})"
    return f"  hit {run['hit_frames']}/{run['frames']}{scores}"


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    """``--backend`` / ``--precision`` (see :class:`vsda_ros.inference.SegmenterConfig`)."""
    p.add_argument('--backend', default='torch',
                   choices=['auto', 'torch', 'openvino', 'onnxruntime'],
                   help='inference backend: torch (reference), openvino, onnxruntime, or auto '
                        '(the fastest installed for the device) (default: %(default)s)')
    p.add_argument('--precision', default='fp32', choices=['auto', 'fp32', 'bf16', 'int8'],
                   help='fp32; bf16 (openvino); int8 (a --model folder made by vsda export '
                        '--precision int8 --calibrate); auto = fp32 unless the export records '
                        'a lower precision within the accuracy limits (default: %(default)s)')


def build_parser() -> argparse.ArgumentParser:
    from vsda_ros.models.zoo import LABEL_MAPS, ZOO

    parser = argparse.ArgumentParser(
        prog='vsda', description='Domain-adaptive video semantic segmentation tools.',
        epilog=EPILOG)
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    p = sub.add_parser(
        'segment', help='segment a frame folder or a video offline',
        description='Segment every frame of a folder of images or a video file; write label '
                    'masks (OUT/labels/<frame>.png, class ids), colour masks (OUT/color/), an '
                    'overlay video and strip, and a JSON summary. With --labels, also mIoU.',
        epilog=EPILOG)
    p.add_argument('--model', default='espnet-camvid',
                   help=f'zoo name ({", ".join(ZOO)}) or a checkpoint file '
                        '(default: %(default)s)')
    p.add_argument('--input', required=True,
                   help='folder of images, a video file, or a rosbag2 (mcap or sqlite3)')
    p.add_argument('--topic', default=None,
                   help='image topic of a bag input (default: its only image topic)')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--size', default=None,
                   help="network input WIDTHxHEIGHT, e.g. 480x360 (default: the model's native)")
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto (default: cpu)')
    _add_backend_args(p)
    p.add_argument('--labels', default=None,
                   help='folder of label PNGs with the same file names (class ids, 11 = void)')
    p.add_argument('--map', default=None, choices=sorted(LABEL_MAPS),
                   help='map the model classes before scoring (e.g. Cityscapes → CamVid-11)')
    p.add_argument('--json', default=None, help='summary JSON path (default: OUT/summary.json)')
    p.add_argument('--alpha', type=float, default=0.5, help='overlay blend (default: 0.5)')
    p.add_argument('--no-overlay', action='store_true', help='skip the overlay video and strip')
    p.add_argument('--max-frames', type=int, default=None, help='stop after N frames')
    p.add_argument('--allow-truncated', action='store_true',
                   help='segment what can be read of a truncated video (fewer frames than its '
                        'container announces) or a damaged bag, with a warning, and record '
                        'frames_expected / frames_read in the summary (default: such input is '
                        'an error, exit 2, and the partial outputs are removed)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser(
        'fetch', help='download published weights (sha256-checked)',
        description='Download published weights into VSDA_CACHE_DIR/weights with a progress '
                    'bar; resumes partial downloads and refuses files whose sha256 differs.',
        epilog=EPILOG)
    p.add_argument('name', choices=[*ZOO, 'all'], help='model name, or all')
    p.add_argument('--base-url', default=None,
                   help='fetch from a mirror laid out like ../shared/data (BASE/weights/FILE)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser(
        'demo', help='run segmentation_node on a real clip published over ROS 2',
        description='Start segmentation_node, publish a frame folder (default: the real CamVid '
                    'val clip) over ROS 2 on loopback, and record what the node publishes: '
                    'colour masks, overlays, label masks, diagnostics (and mIoU with labels).',
        epilog=EPILOG)
    p.add_argument('--model', default=None,
                   help='run only this model (default: the three-run demo: '
                        'espnetv2-cityscapes vs the adapted espnetv2-camvid-tsl side by side, '
                        'then espnet-camvid with keyframe propagation and its trained modules)')
    p.add_argument('--strategy', default='per_frame', choices=['per_frame', 'fusion', 'keyframe'],
                   help='with --model: the temporal strategy (default: %(default)s)')
    p.add_argument('--size', default='480x360', help="network input WIDTHxHEIGHT ('' = native)")
    p.add_argument('--map', default='cityscapes-camvid',
                   help='with --model: label map for scoring (default: %(default)s; "" for '
                        'none)')
    p.add_argument('--frames', default=None, help='frame folder (default: CamVid val)')
    p.add_argument('--labels', default=None, help='label folder (default: CamVid valannot)')
    p.add_argument('--out', default='demo_out', help='output folder (default: demo_out)')
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        'bench', help='benchmark segmentation_node over real DDS, or the network per backend',
        description='node: start segmentation_node, publish real frames at --rate for --duration s '
                    '(or exactly --frames N: a soak test) and report end-to-end and inference '
                    'latency p50/p95, node overhead, drops, RSS (start, end, peak), open file '
                    'descriptors, threads, and whether the node\'s totals add up (received = '
                    'processed + dropped + bad_frames; exit 1 if not). Runs with '
                    'ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a domain of its own. '
                    'model: the network alone in this process on each --backend x '
                    '--precision, in interleaved rounds: latency p50/p95, GFLOP/s, speed-up '
                    'over torch eager, fraction of the fp32 peak (a matmul measured in the '
                    'same run); with --source (and --labels) argmax agreement (and mIoU). '
                    'JSON: {"model", "size", "peak_gflops", "results": [{"backend", '
                    '"precision", "ms_p50", "ms_p95", "gflops_per_s", "speedup_vs_torch", '
                    '"miou", "argmax_agreement"}]}. int8 needs --model DIR from vsda export '
                    '--precision int8 --calibrate.',
        epilog=EPILOG)
    p.add_argument('target', choices=['node', 'model'], help='what to benchmark')
    p.add_argument('--backend', default=None,
                   help='node: the node\'s backend (default torch); model: comma-separated '
                        '(default torch,openvino,onnxruntime)')
    p.add_argument('--precision', default=None,
                   help='node: the node\'s precision (default fp32); model: comma-separated '
                        '(default fp32,bf16,int8; what cannot run here is listed as skipped)')
    p.add_argument('--rounds', type=int, default=20,
                   help='model: interleaved rounds (default: %(default)s)')
    p.add_argument('--labels', default=None, help='model: labels of --source (adds mIoU)')
    p.add_argument('--map', default=None, choices=sorted(LABEL_MAPS),
                   help='model: map the model classes to the labels')
    p.add_argument('--max-frames', type=int, default=None,
                   help='model: at most N frames of --source for the accuracy columns')
    p.add_argument('--model', default='espnet-camvid', help='(default: %(default)s)')
    p.add_argument('--source', default=None,
                   help='folder of frames to publish (default: VSDA_DATA_DIR/camvid/val)')
    p.add_argument('--frames', type=int, default=None,
                   help='publish exactly N frames after the warm-up (overrides --duration), '
                        'e.g. --frames 10000 --rate 30 for a soak test')
    p.add_argument('--frame-size', default=None,
                   help='resize the published frames to WIDTHxHEIGHT (e.g. 3840x2160 for a '
                        '4K camera; default: as read)')
    p.add_argument('--size', default='', help="network input WIDTHxHEIGHT ('' = native)")
    p.add_argument('--rate', type=float, default=30.0, help='publish rate in Hz (default: 30)')
    p.add_argument('--duration', type=float, default=60.0,
                   help='measured seconds (default: 60)')
    p.add_argument('--warmup', type=float, default=5.0,
                   help='node: unmeasured seconds first; model: warm-up calls per '
                        'configuration (default: 5)')
    p.add_argument('--max-queue-wait-ms', type=float, default=0.0,
                   help="the node's latency mode (max_queue_wait_ms parameter; 0 = off)")
    p.add_argument('--json', nargs='?', const='-', default=None, metavar='PATH',
                   help='write the JSON report to PATH; --json alone prints it on stdout (the '
                        'summary then goes to stderr)')
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        'export', help='export a model to ONNX / OpenVINO (fp32, bf16, int8), checked vs torch',
        description='Export the model contract (features, head and the whole network) as '
                    'static graphs at --size with torch.onnx (dynamo), optionally as OpenVINO '
                    'IR, quantize to int8 on your own unlabelled frames (--calibrate), and '
                    'check every backend/precision against torch on real frames (max logit '
                    'error, argmax agreement; mIoU and per-class IoU with --labels). OUT holds '
                    'the graphs, model.pt and vsda_export.json (meta, size, weights sha256, '
                    'the checks); use OUT as a model name: vsda segment --model OUT --backend '
                    'openvino, or the node\'s model: OUT. precision auto picks bf16/int8 only '
                    'when the recorded check is within the limits (fp32: 99.9 %% agreement, '
                    '0.05 mIoU; bf16/int8: 1.0 mIoU).',
        epilog=EPILOG)
    p.add_argument('--model', required=True, help='zoo name, checkpoint file or export folder')
    p.add_argument('--size', default=None,
                   help="input WIDTHxHEIGHT of the graphs (default: the model's native)")
    p.add_argument('--format', default='openvino', choices=['onnx', 'openvino'],
                   help='onnx, or openvino (ONNX + OpenVINO IR) (default: %(default)s)')
    p.add_argument('--precision', default='fp32,bf16',
                   help='comma-separated: fp32 (always), bf16 (checked; a compile hint), int8 '
                        '(needs --calibrate) (default: %(default)s)')
    p.add_argument('--calibrate', default=None, metavar='FOLDER|VIDEO|BAG',
                   help='unlabelled frames of your data for int8 calibration')
    p.add_argument('--calibrate-frames', type=int, default=32,
                   help='calibration frames, spread over the source (default: %(default)s)')
    p.add_argument('--topic', default=None, help='image topic of a bag source')
    p.add_argument('--validate', default=None, metavar='FRAMES',
                   help='frames for the accuracy check (default: --calibrate, else '
                        'VSDA_DATA_DIR/camvid/val)')
    p.add_argument('--labels', default=None, help='labels of --validate (adds mIoU)')
    p.add_argument('--map', default=None, choices=sorted(LABEL_MAPS),
                   help='map the model classes to the labels (e.g. cityscapes-camvid)')
    p.add_argument('--validate-frames', type=int, default=16,
                   help='at most this many validation frames (default: %(default)s)')
    p.add_argument('--out', required=True, help='export folder')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        'adapt', help='adapt a model / train temporal modules on unlabelled target video',
        description='Train on unlabelled target video (frame folders, video files, rosbag2 '
                    'bags) and, for '
                    'some recipes, labelled source frames. Recipes: davss (DMNet + CFNet for '
                    'the keyframe strategy, frozen network), fusion (the fusion block, teacher-'
                    'student under degradations, frozen network), source (supervised on '
                    'labelled source frames), tps (cross-frame pseudo-labels through optical '
                    'flow), i2vda (temporal augmentation + proxy network + output-level LSGAN), '
                    'vat_vst (clip-level adversarial alignment, then video self-training), tsl '
                    '(temporal-spatial teacher-student under temporal weather; trains the '
                    'network and the fusion block). Writes a vsda checkpoint that '
                    'segmentation_node and vsda eval load, a resumable state (OUT.state.pt) and a '
                    'JSON summary (OUT.json). Under torchrun it trains with DDP (gloo on CPU).',
        epilog=EPILOG)
    p.add_argument('--config', default=None,
                   help='recipe YAML (config/experiments/*.yaml); flags override it')
    from vsda_ros.adaptation.config import RECIPES
    from vsda_ros.adaptation.source_data import SOURCE_MAPS
    p.add_argument('--recipe', default=None, choices=RECIPES)
    p.add_argument('--source', default=None, help='labelled source frame folder')
    p.add_argument('--source-labels', default=None, help='its label folder')
    p.add_argument('--source-map', default=None, choices=sorted(SOURCE_MAPS),
                   help='map the source labels to the model classes')
    p.add_argument('--train-base', default=None, action=argparse.BooleanOptionalAction,
                   help='train the network itself (default: the recipe decides)')
    p.add_argument('--freeze', action='append', default=[], metavar='PREFIX',
                   help='keep parameters whose names start with PREFIX fixed (repeatable)')
    p.add_argument('--model', default=None, help='base model (zoo name or checkpoint)')
    p.add_argument('--target', action='append', default=[],
                   help='unlabelled target: frame folder, video or rosbag2 (repeatable)')
    p.add_argument('--out', default=None, help='checkpoint to write')
    p.add_argument('--iterations', type=int, default=None)
    p.add_argument('--batch', type=int, default=None)
    p.add_argument('--lr', type=float, default=None)
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--device', default=None)
    p.add_argument('--val', default=None, help='labelled frame folder to evaluate on')
    p.add_argument('--val-labels', default=None, help='its label folder')
    p.add_argument('--map', default=None, help='label map for --val (e.g. cityscapes-camvid)')
    p.add_argument('--eval-every', type=int, default=None, help='evaluate every N iterations')
    p.add_argument('--folder-fps', type=float, default=None, metavar='HZ',
                   help='frame rate of --target frame folders (default 30; their files carry '
                        'no time stamps: Cityscapes sequences are 17)')
    p.add_argument('--fusion-init', default=None, metavar='CKPT',
                   help='fusion, guided: start from the matching weights of this checkpoint\'s '
                        'fusion block (a second training stage)')
    p.add_argument('--fusion-num-deform', type=int, default=None, metavar='N',
                   help='fusion, guided: deformable steps (0 = warp by the learned motion)')
    p.add_argument('--fusion-stage', default=None, choices=['full', 'motion'],
                   help='fusion, guided: full (default) or motion (only the motion field learns '
                        'the DIS flow; the network is not run)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_cmd_adapt)

    p = sub.add_parser(
        'eval', help='evaluate models and strategies on a clip or bag, clean and in weather',
        description='Run each --strategy over a frame source in time order (an image folder, '
                    'a video, or a rosbag2 in mcap or sqlite3), on the clean frames and under '
                    'each --weather and --transient, and report mIoU and per-class IoU (with '
                    'labels; transient runs also on the hit and not-hit frames), agreement '
                    'with the same model on the clean frames (always), temporal consistency, '
                    'latency p50/p95/p99, throughput, keyframe ratio and frame accounting; with '
                    'keyframe and --pda (or --interval A..B) also the propagation-distance curve '
                    'and the key/non-key cost. Cost is compared by the mean time per frame '
                    '(mean_ms; key frames included), not by p50. --live sends the frames '
                    'through a segmentation_node process over ROS 2 (loopback) instead. Writes '
                    'OUT/report.json, OUT/report.md and PNG plots.',
        epilog='Examples:\n'
               '  vsda eval --source drive.mcap --topic /cam/image_raw --weather fog:0.6 '
               '--weather night:0.9\n'
               '  vsda eval --source frames/ --labels labels/ --weather-sweep '
               '--strategy per_frame,keyframe\n'
               '  vsda eval --source frames/ --labels labels/ --transient all:0.6:0.3 '
               '--transient wiper:0.8:0.2\n\n' + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='espnet-camvid', help='(default: %(default)s)')
    p.add_argument('--source', required=True,
                   help='frame folder (time order by file name), video file, or rosbag2')
    p.add_argument('--topic', default=None,
                   help='image topic of a bag source (default: its only image topic)')
    p.add_argument('--labels', default=None,
                   help='label folder (CamVid: same file names; Cityscapes: *_gtFine_labelIds'
                        '.png), or a label topic of a bag source')
    p.add_argument('--map', default=None, choices=sorted(LABEL_MAPS),
                   help='map model classes to the label classes')
    p.add_argument('--strategy', default='per_frame,fusion,keyframe',
                   help='comma-separated strategies (default: %(default)s)')
    p.add_argument('--weather', action='append', default=[], metavar='KIND:INTENSITY',
                   help='also evaluate under this synthetic weather (fog, rain, snow, night, '
                        'glare, noise; intensity 0..1, e.g. fog:0.6); repeatable')
    p.add_argument('--transient', action='append', default=[], metavar='KIND:INTENSITY:PROB',
                   help='also evaluate with transient degradations: each frame is hit with '
                        'probability PROB (seeded by --seed), its neighbours stay clean; KIND '
                        'is a weather kind or wiper, exposure, jpeg; all:INTENSITY:PROB = the '
                        'six weather kinds (e.g. rain:0.6:0.3); repeatable. Rows report the '
                        'frames hit and the mIoU on hit / not-hit frames')
    p.add_argument('--weather-sweep', action='store_true',
                   help='every weather kind at intensities 0.3, 0.6 and 0.9')
    p.add_argument('--iid-weather', action='store_true',
                   help='draw the weather independently per frame instead of letting it '
                        'evolve smoothly over the clip')
    p.add_argument('--seed', type=int, default=0, help='weather seed (default 0)')
    p.add_argument('--interval', default='5', metavar='N|A..B',
                   help="keyframe interval N (with --pda the curve covers distances 1..9); or "
                        "a range A..B: the PDA curve at distances A..B (and 0, the keyframe "
                        "itself) and the keyframe strategy at interval B, so every frame it "
                        "propagates is on the curve (default 5)")
    p.add_argument('--temporal-weights', default='',
                   help='checkpoint(s) with trained temporal modules, comma-separated')
    p.add_argument('--pda', action='store_true',
                   help='also compute the PDA curve (distances 1..9; --interval A..B for others)')
    p.add_argument('--flow-preset', default='balanced',
                   choices=['ultrafast', 'balanced', 'fast', 'medium'],
                   help='OpenCV DIS preset of the keyframe strategy (balanced = ultrafast down to '
                        'pyramid scale 1; default: %(default)s)')
    p.add_argument('--keyframe-correction', action=argparse.BooleanOptionalAction,
                   default=False,
                   help='keyframe: correct warped features with DMNet/CFNet (default: plain flow '
                        'warping, as the node; --pda always reports both curves)')
    p.add_argument('--distortion-threshold', type=float, default=0.0, metavar='T',
                   help='with keyframe: also run adaptive keyframes (a new keyframe when '
                        "DMNet's mean distortion exceeds T; needs trained DMNet) and compare "
                        'them with fixed intervals (report key "adaptive")')
    p.add_argument('--size', default=None, help='network input WIDTHxHEIGHT')
    p.add_argument('--device', default='cpu')
    _add_backend_args(p)
    p.add_argument('--fps', type=float, default=15.0,
                   help='frame rate of a folder source (videos and bags carry their own)')
    p.add_argument('--max-frames', type=int, default=None)
    p.add_argument('--allow-truncated', action='store_true',
                   help='evaluate what can be read of a truncated video (fewer frames than its '
                        'container announces) or a damaged bag, with a warning; the report '
                        'records frames_expected / frames_read (default: such input is an '
                        'error, exit 2)')
    p.add_argument('--live', action='store_true',
                   help='evaluate through a segmentation_node process over ROS 2: frames are '
                        'published at --rate and the masks it publishes are scored')
    p.add_argument('--attach', default=None, metavar='NAMESPACE',
                   help="with --live: use the segmentation_node already running under this "
                        "namespace ('/' for none; same ROS_DOMAIN_ID, loopback) instead of "
                        "starting one; its own strategy is used, so give one --strategy")
    p.add_argument('--rate', type=float, default=None,
                   help='--live publishing rate in Hz (default: the source frame rate)')
    p.add_argument('--out', default='eval_out', help='output folder (default: eval_out)')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    p.set_defaults(func=_cmd_eval)

    from vsda_ros.data import bag_cli
    from vsda_ros.models import models_cli
    from vsda_ros.ros import replay  # rclpy is imported only when it runs
    from vsda_ros.weather import preview
    bag_cli.add_parser(sub)
    models_cli.add_parser(sub)
    replay.add_parser(sub)
    preview.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with a one-line error on bad input, 130 on a
    Ctrl-C that the command itself does not handle, e.g. one during start-up imports)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        from vsda_ros.runtime import tune_allocator
        tune_allocator()
        try:
            return args.func(args)
        except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
            print(f'vsda {args.command}: error: {e}', file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print('vsda: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
