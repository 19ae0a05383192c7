"""The attention explorer: a local web page where a click on a pixel shows what each attention module of
one or more checkpoints draws from there (``tools/explore.py``).

Served by the standard library's ``ThreadingHTTPServer``: one HTML page with its script inline
(:data:`PAGE`) and JSON endpoints; nothing to install beyond ``seg`` itself, up in well under a second
after the checkpoints load (docs/visualization.md says why not Gradio). :class:`Explorer` holds the logic
and no HTTP: per image and model, :func:`seg.apis.visualize.record_image` runs once, with the attention
hooks and the autograd graph kept (for the last :data:`CACHED` images, by default), so a
click only recomputes that pixel's maps from the records (criss-cross passes and their composition, PAM /
non-local rows, every module's own ``maps()``), and the pixel's effective receptive field is one backward
pass. The pictures are the panels of the static figures (:mod:`seg.visualization.panels`).

Safety: checkpoints load through the one safe reader (:func:`seg.apis.inference.init_model`); the server
binds ``127.0.0.1`` unless told otherwise and then answers only requests addressed to a loopback name
(no DNS rebinding); image names are resolved inside the image folder only (no absolute path, no ``..``,
no symlink out: :meth:`Explorer.resolve`); uploads are decoded in memory and never written anywhere; JSON
requests must say ``application/json`` (a cross-site form cannot); every bad input is a 4xx answer with
a sentence saying what was wrong.

Endpoints: ``GET /`` the page; ``GET /api/info``; ``POST /api/select`` ``{image}``; ``POST /api/upload``
(the file's bytes); ``POST /api/point`` and ``/api/erf`` ``{image, x, y}``; ``POST /api/gradcam``
``{image, class, x?, y?}``; ``GET /api/figure.png?image=&x=&y=&class=`` the current figure as one PNG.
"""
from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import logging
import os
import os.path as osp
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np
import torch

from seg.evaluation.erf import erf_radius
from seg.visualization.attention import cam_layers
from seg.visualization.overlay import overlay
from seg.visualization.palette import colorize
from seg.visualization.panels import (
    Panel,
    attention_panels,
    map_panel,
    panel_figure,
    prediction_panel,
    render_panel,
)

from .inference import init_model, read_rgb
from .visualize import Recorded, class_names_and_palette, grad_cam_map, record_image, resolve_class

__all__ = ['CACHED', 'IMAGE_EXTENSIONS', 'MAX_PIXELS', 'MAX_UPLOAD_BYTES', 'PAGE', 'ExploreError', 'Explorer',
           'make_server', 'serve']

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
MAX_UPLOAD_BYTES = 32 * 2 ** 20
MAX_PIXELS = 4096 * 4096
MAX_LISTED = 5000
CACHED = 2
"""Images whose per-model states are kept (the current one and the one before)."""
_UPLOADS = 8


class ExploreError(Exception):
    """A request the explorer refuses, with the HTTP status and a sentence for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Model:
    name: str
    path: str
    model: torch.nn.Module
    classes: list[str]
    palette: np.ndarray
    cam_layers: list


@dataclass
class _State:
    rec: Recorded
    gates: list[dict] | None = None
    cams: dict[int, np.ndarray] = field(default_factory=dict)
    erfs: OrderedDict = field(default_factory=OrderedDict)  # (x, y) -> (heat, class) of the last few pixels


def _data_url(data: bytes, mime: str = 'image/png') -> str:
    return f'data:{mime};base64,' + base64.b64encode(data).decode('ascii')


def _png_of(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError('PNG encoding failed')
    return buf.tobytes()


def _panel_json(panel: Panel) -> dict:
    return dict(title=panel.title, src=_data_url(render_panel(panel, 'jpeg'), 'image/jpeg'), info=panel.info)


def _names(paths: list[str]) -> list[str]:
    """Short, distinct names for the checkpoints: the file name, with parent folders where two clash."""
    names = [osp.basename(p) for p in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < 8:
        depth += 1
        names = ['/'.join(osp.abspath(p).split(os.sep)[-depth:]) for p in paths]
    return [n if names.count(n) == 1 else f'{n} #{i + 1}' for i, n in enumerate(names)]


class Explorer:
    """What the page asks for, without HTTP: images, predictions, a point's maps, ERF, Grad-CAM, figures.

    Args:
        ckpts: checkpoints (each carries its config), read with the safe reader.
        images: the folder whose images the page lists (recursively); None for uploads only.
        device: where the models run (default CUDA when available).
        cache: images whose states (records, logits with their autograd graph, Grad-CAMs) are kept, for
            every model; the graph is the memory: about 235 MiB for the demo checkpoint at 512x1024.

    Raises:
        ValueError: no checkpoint, or ``images`` is not a folder.
    """

    def __init__(self, ckpts: list[str], images: str | None = None, device: str | None = None,
                 cache: int = CACHED) -> None:
        if not ckpts:
            raise ValueError('give at least one checkpoint (--ckpt)')
        if images is not None and not osp.isdir(images):
            raise ValueError(f'the image folder {images!r} is not a folder')
        self.root = osp.realpath(images) if images is not None else None
        device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.models: list[_Model] = []
        for name, path in zip(_names(list(ckpts)), ckpts):
            model = init_model(path, None, device)
            model.test_cfg['mode'] = 'whole'
            classes, palette = class_names_and_palette(model)
            self.models.append(_Model(name, path, model, classes, palette, cam_layers(model)))
        self._lock = threading.RLock()
        self._uploads: OrderedDict[str, tuple[str, np.ndarray]] = OrderedDict()
        self.cache = max(1, int(cache))
        self._states: OrderedDict[str, list[_State | None]] = OrderedDict()

    # ---------------------------------------------------------------------------------- images
    def list_images(self) -> list[str]:
        """Relative paths of the images under the folder, sorted; symlinks that lead out are left out."""
        if self.root is None:
            return []
        found = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
            for name in sorted(files):
                if name.startswith('.') or not name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                rel = osp.relpath(osp.join(folder, name), self.root).replace(os.sep, '/')
                try:
                    self.resolve(rel)
                except ExploreError:
                    continue
                found.append(rel)
                if len(found) >= MAX_LISTED:
                    return found
        return found

    def resolve(self, name: str) -> str:
        """The real path of image ``name`` of the folder.

        Raises:
            ExploreError: 404 unless ``name`` is a relative path without ``..`` naming an image file whose
                real path (symlinks followed) is inside the folder.
        """
        if self.root is None:
            raise ExploreError(404, 'no image folder was given (--images); upload an image instead')
        parts = name.replace('\\', '/').split('/')
        if (not name or '\0' in name or osp.isabs(name) or name.startswith(('/', '\\')) or '..' in parts
                or not name.lower().endswith(IMAGE_EXTENSIONS)):
            raise ExploreError(404, f'no image {name!r} in the image folder')
        real = osp.realpath(osp.join(self.root, *parts))
        if osp.commonpath([self.root, real]) != self.root or not osp.isfile(real):
            raise ExploreError(404, f'no image {name!r} in the image folder')
        return real

    def image(self, image_id: str) -> tuple[str, np.ndarray]:
        """``(name, RGB image)`` of ``'file/<relative path>'`` or ``'upload/<key>'``."""
        kind, _, key = str(image_id).partition('/')
        if kind == 'upload':
            with self._lock:
                if key not in self._uploads:
                    raise ExploreError(404, 'that upload is no longer kept; upload the image again')
                self._uploads.move_to_end(key)
                return self._uploads[key]
        if kind != 'file':
            raise ExploreError(404, f'unknown image {image_id!r}')
        rgb = read_rgb(self.resolve(key))
        if rgb is None:
            raise ExploreError(400, f'{key!r} is not an image OpenCV can decode')
        if rgb.shape[0] * rgb.shape[1] > MAX_PIXELS:
            raise ExploreError(413, f'{key!r} has {rgb.shape[1]}x{rgb.shape[0]} pixels; the explorer takes at most '
                               f'{MAX_PIXELS} pixels')
        return key, rgb

    def upload(self, data: bytes, filename: str = 'upload') -> str:
        """Decode an uploaded image in memory (as :func:`seg.datasets.read_image` decodes files) and keep
        it; nothing is written to disk. Returns its image id.

        Raises:
            ExploreError: 413 too large (bytes or pixels), 400 not a decodable image.
        """
        if len(data) > MAX_UPLOAD_BYTES:
            raise ExploreError(413, f'the upload has {len(data)} bytes; at most {MAX_UPLOAD_BYTES} are taken')
        if not data:
            raise ExploreError(400, 'the upload is empty')
        try:  # the header alone: refuse a huge image before decoding it
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
            if width * height > MAX_PIXELS:
                raise ExploreError(413, f'the upload has {width}x{height} pixels; at most {MAX_PIXELS} are taken')
        except ExploreError:
            raise
        except Exception:  # noqa: BLE001 - not a format PIL reads: OpenCV decides below
            pass
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ExploreError(400, f'{filename!r} is not an image OpenCV can decode (PNG, JPEG, BMP, TIFF, WebP ...)')
        if bgr.shape[0] * bgr.shape[1] > MAX_PIXELS:
            raise ExploreError(413, f'the upload has {bgr.shape[1]}x{bgr.shape[0]} pixels; at most {MAX_PIXELS} '
                               'are taken')
        key = hashlib.sha1(data).hexdigest()[:16]
        name = osp.basename(str(filename).replace('\\', '/'))[:120] or 'upload'
        with self._lock:
            self._uploads[key] = (name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            self._uploads.move_to_end(key)
            while len(self._uploads) > _UPLOADS:
                self._uploads.popitem(last=False)
        return f'upload/{key}'

    # ---------------------------------------------------------------------------------- state
    def _state(self, image_id: str, index: int, image: np.ndarray) -> _State:
        """The state of (image, model): computed on first use, kept for the last :attr:`cache` images."""
        states = self._states.get(image_id)
        if states is None:
            states = self._states[image_id] = [None] * len(self.models)
            while len(self._states) > self.cache:
                self._states.popitem(last=False)
        self._states.move_to_end(image_id)
        if states[index] is None:
            states[index] = _State(record_image(self.models[index].model, image, keep_graph=True))
        return states[index]

    @staticmethod
    def _point(image: np.ndarray, x, y) -> tuple[int, int]:
        try:
            x, y = int(x), int(y)
        except (TypeError, ValueError):
            raise ExploreError(400, f'a point is two integers x, y; got {x!r}, {y!r}') from None
        h, w = image.shape[:2]
        if not (0 <= x < w and 0 <= y < h):
            raise ExploreError(400, f'point ({x}, {y}) is outside the {w}x{h} (width x height) image')
        return x, y

    def info(self) -> dict:
        """The models (names, classes, colours, attention modules) and the folder's images."""
        models = [dict(name=m.name, classes=m.classes, palette=m.palette[:len(m.classes)].tolist(),
                       modules=[dict(name=n, type=type(mod).__name__) for n, mod in
                                dict((n, mod) for n, mod in m.model.named_modules()
                                     if n and hasattr(mod, 'attention_maps') and mod.attention_maps).items()])
                  for m in self.models]
        return dict(models=models, images=[f'file/{n}' for n in self.list_images()],
                    folder=osp.basename(self.root) if self.root else None,
                    limits=dict(upload_bytes=MAX_UPLOAD_BYTES, pixels=MAX_PIXELS))

    # ---------------------------------------------------------------------------------- answers
    def select(self, image_id: str) -> dict:
        """The image, and per model its prediction overlay, legend and gate panels (computed once)."""
        name, image = self.image(image_id)
        out = dict(image=image_id, name=name, width=int(image.shape[1]), height=int(image.shape[0]),
                   input=_data_url(_png_of(image)), models=[])
        with self._lock:
            for i, m in enumerate(self.models):
                st = self._state(image_id, i, image)
                if st.gates is None:
                    st.gates = [_panel_json(p) for p in attention_panels(st.rec.modules, st.rec.records, st.rec.geom,
                                                                         image, None, gates=True)]
                pred = st.rec.pred
                ids, counts = np.unique(pred, return_counts=True)
                legend = [dict(id=int(c), name=m.classes[c], color=[int(v) for v in m.palette[c]],
                               share=round(float(n) / pred.size, 4))
                          for c, n in sorted(zip(ids.tolist(), counts.tolist()), key=lambda t: -t[1])
                          if 0 <= c < len(m.classes)]
                out['models'].append(dict(name=m.name, prediction=_data_url(_png_of(overlay(image, colorize(
                    pred, m.palette)))), legend=legend, gates=st.gates, modules=len(st.rec.modules)))
        return out

    def point(self, image_id: str, x, y) -> dict:
        """Per model, every map of pixel (x, y) (attention modules' ``maps()`` from the cached records)."""
        _, image = self.image(image_id)
        x, y = self._point(image, x, y)
        out = dict(image=image_id, x=x, y=y, models=[])
        with self._lock:
            for i, m in enumerate(self.models):
                st = self._state(image_id, i, image)
                panels = attention_panels(st.rec.modules, st.rec.records, st.rec.geom, image, (x, y), gates=False)
                out['models'].append(dict(name=m.name, predicted=m.classes[int(st.rec.pred[y, x])],
                                          panels=[_panel_json(p) for p in panels]))
        return out

    def _erf_panel(self, i: int, st: _State, image: np.ndarray, x: int, y: int) -> Panel:
        rec, m = st.rec, self.models[i]
        r, c = rec.geom.to_input(x, y)
        if (x, y) not in st.erfs:
            at = rec.logits[0, :, r, c]  # [K]
            k = int(at.detach().argmax())
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(at[k], rec.inputs, retain_graph=True)  # [1, 3, Hp, Wp]
            # [Hp, Wp], as seg.evaluation.erf computes it
            st.erfs[(x, y)] = (grad[0].abs().sum(0).double().cpu().numpy(), k)
            while len(st.erfs) > 4:
                st.erfs.popitem(last=False)
        heat, k = st.erfs[(x, y)]
        radii = erf_radius(heat, centre=(r, c))
        return map_panel(image, heat, rec.geom.cover(),
                         f'effective receptive field | point ({x}, {y})\n|d logit({m.classes[k]}) / d input|, '
                         f'50 % / 95 % within r = {radii["radius_50"]} / {radii["radius_95"]} input px',
                         (x, y), smooth=True, label='|input gradient|',
                         info=dict(what='effective receptive field', class_id=k, point=[x, y], input_pixel=[r, c],
                                   **{k_: v for k_, v in radii.items()}))

    def erf(self, image_id: str, x, y) -> dict:
        """Per model, the effective receptive field of pixel (x, y): the absolute input gradient of its
        predicted class's logit, summed over the colour channels (one backward pass of the kept graph)."""
        _, image = self.image(image_id)
        x, y = self._point(image, x, y)
        out = dict(image=image_id, x=x, y=y, models=[])
        with self._lock:
            for i, m in enumerate(self.models):
                st = self._state(image_id, i, image)
                out['models'].append(dict(name=m.name, panels=[_panel_json(self._erf_panel(i, st, image, x, y))]))
        return out

    def _cam_panel(self, i: int, st: _State, image: np.ndarray, cls, point) -> Panel:
        m = self.models[i]
        cid = resolve_class(cls, m.classes, 0)
        if cid not in st.cams:
            st.cams[cid] = grad_cam_map(m.model, st.rec, cid, m.cam_layers)
        where = f' | point ({point[0]}, {point[1]})' if point else ''
        return map_panel(image, st.cams[cid], st.rec.geom.cover(),
                         f'Grad-CAM of class {m.classes[cid]!r}{where}\n{", ".join(n for n, _ in m.cam_layers)}, '
                         'over the pixels predicted as it', point, smooth=True, label='Grad-CAM',
                         info=dict(what='Grad-CAM', class_id=cid))

    def gradcam(self, image_id: str, cls, x=None, y=None) -> dict:
        """Per model, Grad-CAM of class ``cls`` (name or index; a model without it says so)."""
        _, image = self.image(image_id)
        point = self._point(image, x, y) if x is not None and y is not None else None
        if cls is None or str(cls) == '':
            raise ExploreError(400, 'pick a class for Grad-CAM')
        out = dict(image=image_id, models=[])
        with self._lock:
            for i, m in enumerate(self.models):
                st = self._state(image_id, i, image)
                try:
                    out['models'].append(dict(name=m.name, panels=[_panel_json(self._cam_panel(i, st, image, cls,
                                                                                                point))]))
                except ValueError as exc:
                    out['models'].append(dict(name=m.name, panels=[], error=str(exc)))
        return out

    def figure(self, image_id: str, x=None, y=None, cls=None) -> bytes:
        """The current view as one PNG: a column per model (prediction, the point's maps, its effective
        receptive field, Grad-CAM, the gates), drawn by :func:`seg.visualization.panels.panel_figure`."""
        name, image = self.image(image_id)
        point = self._point(image, x, y) if x not in (None, '') and y not in (None, '') else None
        columns = []
        with self._lock:
            for i, m in enumerate(self.models):
                st = self._state(image_id, i, image)
                rec = st.rec
                panels = [prediction_panel(image, rec.pred, m.palette, m.classes, point, title=m.name)]
                if point is not None:
                    panels += attention_panels(rec.modules, rec.records, rec.geom, image, point, gates=False)
                    panels.append(self._erf_panel(i, st, image, *point))
                if cls not in (None, ''):
                    try:
                        panels.append(self._cam_panel(i, st, image, cls, point))
                    except ValueError:
                        pass
                panels += [p for p in attention_panels(rec.modules, rec.records, rec.geom, image, point, gates=True)
                           if p.info.get('kind') != 'point']
                columns.append(panels)
        rows = max(len(c) for c in columns)
        grid = [c[r] if r < len(c) else None for r in range(rows) for c in columns]
        where = f' | point ({point[0]}, {point[1]})' if point else ''
        return panel_figure(grid, None, columns=len(columns), title=f'{name}{where}')


# -------------------------------------------------------------------------------------------- HTTP
def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return host == 'localhost'


class _Handler(BaseHTTPRequestHandler):
    explorer: Explorer
    server_version = 'seg-explore'
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt: str, *args) -> None:  # quiet: one debug line per request
        logger.debug('%s %s', self.address_string(), fmt % args)

    # ------------------------------------------------------------------ replies
    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-store')
        self.send_header('X-Content-Type-Options', 'nosniff')
        self.send_header('Referrer-Policy', 'no-referrer')
        self.send_header('Content-Security-Policy', "default-src 'none'; img-src 'self' data: blob:; "
                         "style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; "
                         "frame-ancestors 'none'")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), 'application/json; charset=utf-8')

    def _error(self, status: int, message: str) -> None:
        self.close_connection = True  # a refused request's body may be unread: do not reuse the connection
        self._json(status, dict(error=message))

    def _allowed_host(self) -> bool:
        """On a loopback address, only requests addressed to a loopback name (DNS rebinding)."""
        if not _loopback(self.server.server_address[0]):
            return True
        host = (self.headers.get('Host') or '').strip()
        name = host.rsplit(':', 1)[0] if not host.endswith(']') else host
        return _loopback(name)

    def _body(self, limit: int) -> bytes:
        try:
            length = int(self.headers.get('Content-Length') or 0)
        except ValueError:
            raise ExploreError(400, 'a bad Content-Length') from None
        if length > limit:
            self.close_connection = True
            raise ExploreError(413, f'the request has {length} bytes; at most {limit} are taken')
        return self.rfile.read(length) if length > 0 else b''

    def _run(self, fn) -> None:
        try:
            if not self._allowed_host():
                raise ExploreError(403, 'requests must be addressed to the loopback address the explorer serves')
            fn()
        except ExploreError as exc:
            self._error(exc.status, str(exc))
        except (ValueError, KeyError) as exc:
            self._error(400, str(exc).strip("'\""))
        except Exception as exc:  # noqa: BLE001 - the page shows it; the log has the traceback
            logger.exception('request %s failed', self.path)
            self._error(500, f'{type(exc).__name__}: {exc}')

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:  # noqa: N802
        self._run(self._get)

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        self._run(self._post)

    def _get(self) -> None:
        url = urlsplit(self.path)
        if url.path in ('/', '/index.html'):
            self._send(200, PAGE.encode(), 'text/html; charset=utf-8')
        elif url.path == '/api/info':
            self._json(200, self.explorer.info())
        elif url.path == '/api/figure.png':
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if 'image' not in q:
                raise ExploreError(400, 'which image? (?image=...)')
            png = self.explorer.figure(q['image'], q.get('x'), q.get('y'), q.get('class'))
            stem = osp.splitext(osp.basename(q['image']))[0] or 'explorer'
            name = ''.join(ch if ch.isalnum() or ch in '-_' else '_' for ch in stem)
            where = f'_x{q["x"]}_y{q["y"]}' if q.get('x') and q.get('y') else ''
            self._send(200, png, 'image/png',
                       {'Content-Disposition': f'attachment; filename="explorer_{name}{where}.png"'})
        else:
            raise ExploreError(404, f'no such page {url.path!r}')

    def _post(self) -> None:
        path = urlsplit(self.path).path
        if path == '/api/upload':
            ctype = (self.headers.get('Content-Type') or '').split(';')[0].strip().lower()
            if ctype != 'application/octet-stream' and not ctype.startswith('image/'):
                raise ExploreError(415, 'send the image file itself as application/octet-stream or image/*')
            data = self._body(MAX_UPLOAD_BYTES)
            image_id = self.explorer.upload(data, unquote(self.headers.get('X-Filename') or 'upload'))
            self._json(200, self.explorer.select(image_id))
            return
        routes = {'/api/select': lambda q: self.explorer.select(q['image']),
                  '/api/point': lambda q: self.explorer.point(q['image'], q.get('x'), q.get('y')),
                  '/api/erf': lambda q: self.explorer.erf(q['image'], q.get('x'), q.get('y')),
                  '/api/gradcam': lambda q: self.explorer.gradcam(q['image'], q.get('class'), q.get('x'),
                                                                  q.get('y'))}
        if path not in routes:
            raise ExploreError(404, f'no such endpoint {path!r}')
        if (self.headers.get('Content-Type') or '').split(';')[0].strip().lower() != 'application/json':
            raise ExploreError(415, 'send JSON (Content-Type: application/json)')
        try:
            query = json.loads(self._body(1 << 16) or b'{}')
        except json.JSONDecodeError as exc:
            raise ExploreError(400, f'the request is not JSON: {exc}') from None
        if not isinstance(query, dict) or not isinstance(query.get('image'), str):
            raise ExploreError(400, 'say which image: {"image": "..."}')
        self._json(200, routes[path](query))


def make_server(explorer: Explorer, host: str = '127.0.0.1', port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for ``explorer`` on ``host:port`` (port 0: a free one); call ``serve_forever``."""
    handler = type('ExplorerHandler', (_Handler,), {'explorer': explorer})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(ckpts: list[str], images: str | None = None, host: str = '127.0.0.1', port: int = 8765,
          device: str | None = None, cache: int = CACHED) -> int:
    """Load the checkpoints, print the page's address and serve until Ctrl-C."""
    explorer = Explorer(ckpts, images, device, cache)
    server = make_server(explorer, host, port)
    bound_host, bound_port = server.server_address[:2]
    shown = f'[{bound_host}]' if ':' in bound_host else bound_host
    if not _loopback(bound_host):
        print(f'warning: serving on {bound_host}, reachable from other machines, without authentication',
              flush=True)
    print(f'seg explorer: http://{shown}:{bound_port}/ ({len(explorer.models)} checkpoint(s), '
          f'{len(explorer.list_images())} image(s)); Ctrl-C to stop', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>seg attention explorer</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.35 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
#top { position: sticky; top: 0; z-index: 2; }
header { padding: 8px 16px; background: #1d2330; color: #fff; display: flex; gap: 14px; align-items: center;
         flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0 10px 0 0; }
header label { display: flex; gap: 6px; align-items: center; }
select, button, input { font: inherit; }
#status { padding: 6px 16px; min-height: 1.3em; background: #e8ecf3; }
#status.error { background: #fde2e2; color: #8a1111; }
main { padding: 10px 16px; }
.view { position: relative; }
.view img { display: block; width: 100%; cursor: crosshair; image-rendering: pixelated; }
.marker { position: absolute; width: 18px; height: 18px; margin: -12px 0 0 -12px; border: 3px solid #fff;
          border-radius: 50%; box-shadow: 0 0 0 2px #000, inset 0 0 0 2px #000; pointer-events: none; }
#models { display: grid; gap: 16px; margin-top: 10px; }
.model { background: #fff; border: 1px solid #d5dae3; border-radius: 6px; padding: 8px; min-width: 0; }
.model h2 { font-size: 15px; margin: 2px 0 6px; overflow-wrap: anywhere; }
.model h3 { font-size: 13px; margin: 10px 0 4px; color: #4a5468; }
.panels img { width: 100%; display: block; margin-bottom: 6px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 12px; margin: 6px 0; font-size: 12px; }
.legend span.sw { display: inline-block; width: 12px; height: 12px; border: 1px solid #555; margin-right: 4px;
                  vertical-align: -2px; }
.note { color: #6b7280; font-size: 12px; }
.err { color: #8a1111; }
</style></head>
<body>
<div id="top">
<header>
  <h1>seg attention explorer</h1>
  <label>image <select id="image"><option value="">(choose)</option></select></label>
  <label>or upload <input id="upload" type="file" accept="image/*"></label>
  <label><input id="raw" type="checkbox"> show the image without the prediction</label>
  <label>Grad-CAM class <select id="class"><option value="">(none)</option></select></label>
  <button id="download" disabled>Download figure (PNG)</button>
</header>
<div id="status">Loading...</div>
</div>
<main>
  <div class="note">Click a pixel of a prediction: every attention module of each checkpoint shows what that pixel
    draws from, then its effective receptive field.</div>
  <div id="models"></div>
</main>
<script>
"use strict";
const S = { image: null, name: '', width: 0, height: 0, point: null, seq: 0, models: [], timings: [],
            busy: 0 };
window.explorer = S;
const $ = (id) => document.getElementById(id);
function status(text, error) { const s = $('status'); s.textContent = text; s.className = error ? 'error' : ''; }
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
async function api(path, body, raw) {
  const opts = { method: 'POST', headers: {} };
  if (raw) { opts.headers['Content-Type'] = 'application/octet-stream';
             opts.headers['X-Filename'] = encodeURIComponent(raw.name); opts.body = raw; }
  else { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  const j = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(j.error || `HTTP ${r.status}`);
  return j;
}
async function init() {
  const r = await fetch('/api/info');
  const info = await r.json();
  S.models = info.models;
  for (const id of info.images) $('image').append(el('option', { value: id }, id.slice(5)));
  const classes = [...new Set(info.models.flatMap((m) => m.classes))];
  for (const c of classes) $('class').append(el('option', { value: c }, c));
  const grid = $('models');
  grid.style.gridTemplateColumns = `repeat(${info.models.length}, minmax(0, 1fr))`;
  info.models.forEach((m, i) => {
    const col = el('section', { class: 'model', id: `m${i}` });
    col.append(el('h2', {}, m.name));
    const view = el('div', { class: 'view' });
    view.append(el('img', { class: 'pred', alt: `prediction of ${m.name}` }));
    col.append(view, el('div', { class: 'legend' }));
    if (!m.modules.length) col.append(el('div', { class: 'note' }, 'this model has no attention module'));
    for (const [cls, title] of [['point', 'the clicked pixel'], ['erf', 'effective receptive field'],
                                ['gradcam', 'Grad-CAM'], ['gates', 'gates (independent of the pixel)']]) {
      col.append(el('h3', { class: `h-${cls}` }, title), el('div', { class: `panels ${cls}` }));
    }
    grid.append(col);
  });
  document.querySelectorAll('.view img').forEach((img) => img.addEventListener('click', click));
  status(info.images.length ? `${info.models.length} checkpoint(s); choose an image` :
         `${info.models.length} checkpoint(s); no image folder: upload an image`);
}
function markers() {
  document.querySelectorAll('.marker').forEach((m) => m.remove());
  if (!S.point) return;
  document.querySelectorAll('.view').forEach((v) => {
    const img = v.querySelector('img');
    if (!img.naturalWidth) return;
    const m = el('div', { class: 'marker' });
    m.style.left = `${(S.point[0] + 0.5) * img.clientWidth / img.naturalWidth}px`;
    m.style.top = `${(S.point[1] + 0.5) * img.clientHeight / img.naturalHeight}px`;
    v.append(m);
  });
}
window.addEventListener('resize', markers);
async function setPanels(kind, r) {
  const loads = [];
  r.models.forEach((m, i) => {
    const box = document.querySelector(`#m${i} .panels.${kind}`);
    box.replaceChildren();
    if (m.error) box.append(el('div', { class: 'err' }, m.error));
    for (const p of m.panels) {
      const img = el('img', { alt: p.title, title: p.title, 'data-kind': kind,
                              'data-checksum': p.info.checksum || '',
                              'data-feature-pixel': JSON.stringify(p.info.feature_pixel || null) });
      img.src = p.src;
      box.append(img);
      loads.push(img.decode().catch(() => null));
    }
    if (!m.panels.length && kind === 'point' && !m.error)
      box.append(el('div', { class: 'note' }, 'no per-pixel attention map in this model'));
  });
  await Promise.all(loads);
}
function show(r) {
  S.image = r.image; S.name = r.name; S.width = r.width; S.height = r.height; S.point = null; S.seq++;
  S.input = r.input;
  S.predictions = r.models.map((m) => m.prediction);
  r.models.forEach((m, i) => {
    const col = $(`m${i}`);
    const pred = col.querySelector('img.pred');
    pred.src = $('raw').checked ? r.input : m.prediction;
    const legend = col.querySelector('.legend');
    legend.replaceChildren();
    for (const c of m.legend) {
      const item = el('span', { title: `${(100 * c.share).toFixed(1)} % of the pixels` });
      const sw = el('span', { class: 'sw' });
      sw.style.background = `rgb(${c.color.join(',')})`;
      item.append(sw, document.createTextNode(c.name));
      legend.append(item);
    }
    for (const kind of ['point', 'erf', 'gradcam']) col.querySelector(`.panels.${kind}`).replaceChildren();
  });
  setPanels('gates', { models: r.models.map((m) => ({ panels: m.gates })) });
  $('download').disabled = false;
  markers();
}
async function select(id) {
  if (!id) return;
  S.busy++;
  status(`computing the features of ${id.slice(5)} ...`);
  const t0 = performance.now();
  try {
    show(await api('/api/select', { image: id }));
    status(`${S.name} (${S.width}x${S.height}): features in ${((performance.now() - t0) / 1000).toFixed(2)} s;` +
           ' click a pixel');
    if ($('class').value) await gradcam();
  } catch (e) { status(e.message, true); } finally { S.busy--; }
}
async function click(ev) {
  if (!S.image) return;
  const img = ev.currentTarget, box = img.getBoundingClientRect();
  const x = Math.min(S.width - 1, Math.max(0, Math.floor((ev.clientX - box.left) * img.naturalWidth / box.width)));
  const y = Math.min(S.height - 1, Math.max(0, Math.floor((ev.clientY - box.top) * img.naturalHeight / box.height)));
  await point(x, y);
}
async function point(x, y) {
  const seq = ++S.seq;
  S.point = [x, y]; S.busy++;
  markers();
  status(`point (${x}, ${y}) ...`);
  const t0 = performance.now();
  try {
    const r = await api('/api/point', { image: S.image, x, y });
    if (seq !== S.seq) return;
    await setPanels('point', r);
    const t1 = performance.now();
    status(`point (${x}, ${y}): attention maps in ${((t1 - t0) / 1000).toFixed(2)} s; effective receptive field ...`);
    const e = await api('/api/erf', { image: S.image, x, y });
    if (seq !== S.seq) return;
    await setPanels('erf', e);
    const t2 = performance.now();
    S.timings.push({ x, y, attention_ms: t1 - t0, erf_ms: t2 - t0 });
    const cls = r.models.map((m) => `${m.name}: ${m.predicted}`).join(', ');
    status(`point (${x}, ${y}) [${cls}]: attention maps in ${((t1 - t0) / 1000).toFixed(2)} s, effective ` +
           `receptive field in ${((t2 - t0) / 1000).toFixed(2)} s (click to answer, in this browser)`);
  } catch (e) { if (seq === S.seq) status(e.message, true); } finally { S.busy--; }
}
async function gradcam() {
  const cls = $('class').value;
  if (!S.image) return;
  if (!cls) { document.querySelectorAll('.panels.gradcam').forEach((b) => b.replaceChildren()); return; }
  S.busy++;
  status(`Grad-CAM of ${cls} ...`);
  const t0 = performance.now();
  try {
    const body = { image: S.image, class: cls };
    if (S.point) { body.x = S.point[0]; body.y = S.point[1]; }
    await setPanels('gradcam', await api('/api/gradcam', body));
    status(`Grad-CAM of ${cls} in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  } catch (e) { status(e.message, true); } finally { S.busy--; }
}
function download() {
  if (!S.image) return;
  const q = new URLSearchParams({ image: S.image });
  if (S.point) { q.set('x', S.point[0]); q.set('y', S.point[1]); }
  if ($('class').value) q.set('class', $('class').value);
  const a = el('a', { href: `/api/figure.png?${q}`, download: '' });
  document.body.append(a); a.click(); a.remove();
  status('rendering the figure for download ...');
}
$('image').addEventListener('change', (e) => select(e.target.value));
$('raw').addEventListener('change', () => {
  if (!S.image) return;
  document.querySelectorAll('img.pred').forEach((img, i) => { img.src = $('raw').checked ? S.input : S.predictions[i]; });
});
$('class').addEventListener('change', gradcam);
$('download').addEventListener('click', download);
$('upload').addEventListener('change', async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  S.busy++;
  status(`uploading ${file.name} ...`);
  try {
    const r = await api('/api/upload', null, file);
    if (![...$('image').options].some((o) => o.value === r.image))
      $('image').append(el('option', { value: r.image }, `${r.name} (upload)`));
    $('image').value = r.image;
    show(r);
    status(`${r.name} (${r.width}x${r.height}) uploaded; click a pixel`);
  } catch (err) { status(err.message, true); } finally { S.busy--; }
});
init().catch((e) => status(`cannot reach the explorer: ${e.message}`, true));
</script>
</body></html>
"""
