"""CPU backend ``openmp`` (alias ``cpu``): C/OpenMP kernels
(``mmdwnet/ops/csrc/local_aggregation.c``), float32.

The reference backend runs k*k whole-tensor multiply-adds per call; on a CPU each of them
streams the output through memory and costs a thread hand-over.  These kernels do one pass
instead: one parallel loop over (image, weight group); the k x k weights of an output row are
reused from L1 cache by every channel of the group.

The C file is compiled once with the system C compiler (about a second; ``make install`` does
it) and called through :mod:`ctypes`, with argument types read from the C prototypes
(:data:`SIGNATURES`, the one table).

Kernel cache: ``$MMDWNET_OPS_CACHE`` or ``~/.cache/mmdwnet/ops``.  Each build is a folder
``mmdw_ops_<key>/`` (key: hash of source, flags and compiler) holding the library and a
manifest (SHA-256, size, symbols); it is written in a temporary ``.build-<pid>-*`` folder and
renamed into place, so a reader sees either nothing or a complete build, and of two concurrent
builds one wins.  Before loading, the library is checked against its manifest and then loaded
and run once in a child process, so a truncated, corrupted or foreign file cannot crash this
process; a bad entry is rebuilt (with one warning naming the file and the reason) and, if that
fails, the reference backend runs (with a warning saying why).  Temporary folders of killed
builds are removed by the next build.  A read-only cache folder is used if it holds a valid
build; otherwise the kernels are built for this process in a private temporary folder.
"""
import ctypes
import hashlib
import json
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..decompositions import same_padding
from . import reference
from ._common import workspace_matmul as _pointwise
from .base import PrimitiveBackend

NAME = 'openmp'
SOURCE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'csrc', 'local_aggregation.c')
LIBRARY = 'libmmdw_ops.so'
MANIFEST = 'manifest.json'

_CTYPES = {'float*': ctypes.c_void_p, 'long': ctypes.c_long, 'int': ctypes.c_int}


def _signatures(source: str) -> Dict[str, List[type]]:
    """``{function: [ctypes argument types]}`` of every ``void mmdw_*(...)`` in the C source."""
    table = {}
    for name, params in re.findall(r'^void (mmdw_\w+)\(([^)]*)\)', source, re.M):
        kinds = []
        for p in params.split(','):
            p = ' '.join(p.replace('const ', '').split())
            kinds.append(_CTYPES['float*' if '*' in p else p.split()[0]])
        table[name] = kinds
    return table


with open(SOURCE) as _f:
    _SOURCE_TEXT = _f.read()
#: argument types of every exported kernel, read from the C prototypes
SIGNATURES = _signatures(_SOURCE_TEXT)

# Run in a child process before the parent loads a library: loads it, resolves every symbol
# and runs a 2x2 aggregation (a bad file kills the child, not the parent).
_CHECK = r'''
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
for name in sys.argv[2:]:
    getattr(lib, name)
f = ctypes.c_float * 4
x, out, w = f(1, 2, 3, 4), f(), (ctypes.c_float * 36)(*([1.0] * 36))
L, P = ctypes.c_long, ctypes.c_void_p
lib.mmdw_aggregate.argtypes = [P, P, P] + [L] * 7 + [ctypes.c_int]
lib.mmdw_aggregate(x, w, out, 1, 1, 1, 1, 2, 2, 3, 1)
sys.exit(0 if list(out) == [10.0] * 4 else 3)
'''

_lock = threading.Lock()
_state = {}


def _warn(message: str) -> None:
    warnings.warn(f'mmdwnet.ops: {message}', RuntimeWarning, stacklevel=3)


def _cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def _compile_flags():
    flags = ['-O3', '-fopenmp', '-fPIC', '-shared', '-fno-strict-aliasing']
    if {'avx2', 'fma'} <= _cpu_flags():
        flags += ['-mavx2', '-mfma']  # (AVX-512 measured slower for these memory-bound loops)
    return flags


def cache_dir() -> str:
    """The kernel cache folder: ``$MMDWNET_OPS_CACHE`` or ``~/.cache/mmdwnet/ops``."""
    return os.environ.get('MMDWNET_OPS_CACHE') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache'), 'mmdwnet',
        'ops')


def _compiler() -> Tuple[Optional[List[str]], Optional[str]]:
    """(command line of the C compiler, None), or (None, why there is none).

    ``$CC`` is split like a shell would (``CC="gcc -O2"`` or ``CC="ccache gcc"`` work; the
    words after the first are passed before mmdwnet's flags); without it ``gcc``, then ``cc``.
    """
    cc = os.environ.get('CC', '').strip()
    if not cc:
        found = shutil.which('gcc') or shutil.which('cc')
        if found is None:
            return None, ('no C compiler found (neither gcc nor cc is on PATH): install one or '
                          'set CC to a C compiler')
        return [found], None
    try:
        argv = shlex.split(cc)
    except ValueError as e:
        return None, f'CC={cc!r} cannot be split into a command line ({e}): fix the quoting'
    if shutil.which(argv[0]) is None:
        return None, (f'the C compiler {argv[0]!r} named by CC={cc!r} was not found: set CC to '
                      'an installed C compiler (e.g. CC=gcc) or unset it')
    return argv, None


def _entry(cc: List[str]) -> str:
    key = hashlib.sha256('\0'.join([_SOURCE_TEXT, ' '.join(_compile_flags()), ' '.join(cc)])
                         .encode())
    return osp.join(cache_dir(), f'mmdw_ops_{key.hexdigest()[:16]}')


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def verify(entry: str) -> Optional[str]:
    """None if the build folder ``entry`` holds a sound library, else the reason it does not."""
    lib = osp.join(entry, LIBRARY)
    try:
        with open(osp.join(entry, MANIFEST)) as f:
            manifest = json.load(f)
        size = os.path.getsize(lib)
        if size != manifest['size']:
            return f'size {size} bytes, {manifest["size"]} recorded at build (truncated?)'
        if _sha256(lib) != manifest['sha256']:
            return 'content hash differs from the one recorded at build (corrupted or replaced)'
        if sorted(manifest['symbols']) != sorted(SIGNATURES):
            return 'built from another version of the kernel source'
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f'unreadable library or manifest ({e})'
    try:
        proc = subprocess.run([sys.executable, '-c', _CHECK, lib, *SIGNATURES],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f'could not run the load check ({e})'
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f'exit status {proc.returncode}'])[-1]
        return f'failed to load and run in a child process: {detail}'
    return None


def _remove_stale_builds(folder: str, max_age_s: float = 3600.) -> None:
    """Remove ``.build-<pid>-*`` folders left by builds that were killed."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = re.match(r'\.build-(\d+)-', name)
        if not m:
            continue
        path = osp.join(folder, name)
        try:
            os.kill(int(m.group(1)), 0)
            alive = time.time() - os.path.getmtime(path) < max_age_s
        except (ProcessLookupError, PermissionError, OSError):
            alive = False
        if not alive:
            shutil.rmtree(path, ignore_errors=True)


def _compile(cc: List[str], folder: str) -> Optional[str]:
    """Compile into ``folder`` (library + manifest); None and a warning on failure."""
    out = osp.join(folder, LIBRARY)
    flags = _compile_flags()
    command = ' '.join(cc)
    try:
        proc = subprocess.run([*cc, *flags, SOURCE, '-o', out], capture_output=True, text=True)
        if proc.returncode != 0:  # e.g. an old compiler without the ISA flags: portable build
            proc = subprocess.run([*cc, *flags[:5], SOURCE, '-o', out], capture_output=True,
                                  text=True)
    except OSError as e:  # not executable, vanished since it was found, ...
        _warn(f'cannot run the C compiler {command!r} ({e}); set CC to a working C compiler. '
              'The slower pure-PyTorch ops run instead')
        return None
    if proc.returncode != 0:
        _warn(f'building the CPU kernels with {command!r} failed; the slower pure-PyTorch ops '
              f'run instead:\n{proc.stderr[-2000:]}')
        return None
    manifest = dict(sha256=_sha256(out), size=os.path.getsize(out), symbols=sorted(SIGNATURES))
    with open(osp.join(folder, MANIFEST), 'w') as f:
        json.dump(manifest, f)
    return out


def build(verbose: bool = False) -> Optional[str]:
    """Find a verified library in the cache or build one; return its path, or None.

    Raises nothing: without a compiler or a usable build the reference backend runs, and a
    warning says why.
    """
    cc, problem = _compiler()
    if cc is None:
        _warn(f'{problem}. The compiled CPU kernels are unavailable and the slower pure-PyTorch '
              'ops run instead')
        return None
    entry = _entry(cc)
    lib = osp.join(entry, LIBRARY)
    if osp.isdir(entry):
        reason = verify(entry)
        if reason is None:
            return lib
        _warn(f'ignoring the cached CPU kernel library {lib}: {reason}; rebuilding it')
        shutil.rmtree(entry, ignore_errors=True)
    folder = osp.dirname(entry)
    try:
        os.makedirs(folder, exist_ok=True)
        _remove_stale_builds(folder)
        tmp = tempfile.mkdtemp(prefix=f'.build-{os.getpid()}-', dir=folder)
    except OSError as e:  # read-only or unusable cache folder: build for this process only
        _warn(f'cannot write the kernel cache folder {folder} ({e.strerror or e}); building the '
              'CPU kernels for this process only')
        tmp = tempfile.mkdtemp(prefix='mmdwnet-ops-')
        lib = _compile(cc, tmp)
        if lib is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _state['private'] = tmp  # removed once loaded (_library)
        return lib
    try:
        if _compile(cc, tmp) is None:
            return None
        try:
            os.rename(tmp, entry)  # atomic; fails if a concurrent build got there first
        except OSError:
            if verify(entry) is not None:
                raise
    except OSError as e:
        _warn(f'cannot store the CPU kernels in {folder} ({e}); using the pure-PyTorch ops')
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print(f'mmdwnet.ops: built the CPU kernels into {lib}')
    return lib


def _library():
    if 'lib' not in _state:
        with _lock:
            if 'lib' not in _state:
                lib = None
                path = build()
                if path is not None:
                    try:
                        lib = ctypes.CDLL(path)
                        for name, argtypes in SIGNATURES.items():
                            getattr(lib, name).argtypes = argtypes
                    except (OSError, AttributeError) as e:
                        _warn(f'cannot load {path} ({e}); using the pure-PyTorch ops')
                        lib = None
                if 'private' in _state:  # loaded (or failed): the file is no longer needed
                    shutil.rmtree(_state.pop('private'), ignore_errors=True)
                _state['lib'] = lib
    return _state['lib']


def available() -> bool:
    """True when the compiled kernels are built and loaded (builds them on first call)."""
    return _library() is not None


def supports(*tensors) -> bool:
    """CPU float32 tensors only."""
    return all(t.device.type == 'cpu' and t.dtype == torch.float32 for t in tensors)


def _call(name: str, *args) -> None:
    getattr(_library(), name)(*[a.data_ptr() if isinstance(a, Tensor) else a for a in args])


def _threads() -> int:
    return torch.get_num_threads()


# ------------------------------------------------------------------------------ primitives
def aggregate(x: Tensor, w: Tensor, k: int, out: Optional[Tensor] = None) -> Tensor:
    x, w = x.contiguous(), w.contiguous()
    n, c, h, wd = x.shape
    out = torch.empty_like(x) if out is None else out
    _call('mmdw_aggregate', x, w, out, n, w.shape[0], c, w.shape[1], h, wd, k, _threads())
    return out


def _rows_input(x: Tensor, k: int, r0: int, r1: int) -> Tensor:
    """Rows ``[r0, r1)`` of ``x`` (B, C, H, W) as ``mmdw_aggregate_rows`` reads them: flattened,
    with the ``(k - 1) // 2`` rows and columns before and ``k // 2`` after that the window
    reaches, zero outside the map: (B, C, (r1 - r0) * W + (k - 1) * (W + 1)), contiguous."""
    b, c, h, wd = x.shape
    before, after = same_padding(k)
    lo, hi = r0 * wd - before * (wd + 1), r1 * wd + after * (wd + 1)
    flat = x.reshape(b, c, h * wd)
    return torch.nn.functional.pad(flat[..., max(lo, 0):min(hi, h * wd)],
                                   (max(-lo, 0), max(hi - h * wd, 0)))


def _aggregate_rows(x: Tensor, w: Tensor, k: int, out: Tensor, r0: int, r1: int) -> None:
    """Rows ``[r0, r1)`` of :func:`aggregate` into ``out`` (B, C, H, W), for the weights of those
    rows ``w`` (B, G, k*k, (r1 - r0) * W), contiguous and ours to change: the entries whose
    neighbour column is outside the map are first zeroed in place (they never contribute, so the
    result is the same), and the kernel then runs over flattened rows (fast for any map)."""
    n, c, h, wd = x.shape
    groups = w.shape[1]
    _call('mmdw_mask_columns', w, w.shape[0] * groups, r1 - r0, wd, k, _threads())
    _call('mmdw_aggregate_rows', _rows_input(x, k, r0, r1), w, out, n, w.shape[0], c, groups, h,
          wd, k, r0, r1, _threads())


def scatter(g: Tensor, w: Tensor, k: int, out: Optional[Tensor] = None) -> Tensor:
    g, w = g.contiguous(), w.contiguous()
    n, c, h, wd = g.shape
    out = torch.empty_like(g) if out is None else out
    _call('mmdw_scatter', g, w, out, n, w.shape[0], c, w.shape[1], h, wd, k, _threads())
    return out


def correlate(g: Tensor, x: Tensor, groups: int, k: int, out: Optional[Tensor] = None) -> Tensor:
    g, x = g.contiguous(), x.contiguous()
    n, c, h, wd = x.shape
    out = x.new_empty(n, groups, k, k, h, wd) if out is None else out
    _call('mmdw_correlate', g, x, out, n, c, groups, h, wd, k, _threads())
    return out.view(n, groups, k, k, h, wd)


#: Bytes of generated I-D-DW kernels per step of :func:`aggregate_pointwise`: a step is a few
#: images, or a few rows of one image when an image's kernels exceed it (a detection-size map:
#: 1568 x 200 x 336 floats = 421 MB at Tiny's first stage).  The kernels of a step are made by
#: one matrix product into the thread's workspace and consumed at once, while still in cache.
KERNEL_TILE_BYTES = 4 << 20


#: Largest reduced width R (the generator's input channels) for which :func:`aggregate_pointwise`
#: generates the kernels inside the aggregation kernel (:func:`_aggregate_pointwise_fused`):
#: its generation loop costs R multiply-adds a tap and position at near the FMA peak, which
#: beats writing and reading back the kernel tensor up to R = 32; above it MKL's matrix product
#: of the unfused steps wins (measured 2026-12-06, one thread, ``docs/ops.md``).
FUSED_MAX_REDUCED = 32
#: Positions of one image per block of the fused kernel (``BLK`` in ``csrc/local_aggregation.c``):
#: each thread's workspace holds the k*k generated taps of one block.
FUSED_BLOCK = 16
#: ... and for maps of at least one whole block: a smaller map (2x2 at a 32-pixel input's third
#: stage) leaves every block partial, on its scalar path (3.8 ms against 1.7 unfused, measured
#: the same day).
FUSED_MIN_POSITIONS = FUSED_BLOCK
#: Floats of space between two threads' workspaces of the fused kernel: one 4 KiB page, so no
#: two threads' buffers share a page.  Packed back to back (3136-byte buffers, k = 7) each
#: thread's writes pulled the other's lines over (the L2 streamer prefetches ahead within a
#: page) and the kernel ran 1.2x faster with two threads than with one; 128 bytes apart, 1.4x;
#: a page apart, 1.8x (512x32x8x8, R 8: 17.7 -> 15.0 -> 11.5 ms, docs/ops.md).
FUSED_WS_GAP = 1024


def _workspace_stride(k: int) -> int:
    """Floats from one thread's workspace of the fused kernel to the next: its k*k*16 floats
    and :data:`FUSED_WS_GAP`."""
    return k * k * FUSED_BLOCK + FUSED_WS_GAP


def _steps(x: Tensor, w2d: Tensor):
    """(image slice, first row, end row) steps of the I-D-DW op whose generated kernels
    (``w2d.shape[0]`` per position) fit :data:`KERNEL_TILE_BYTES`: several whole images, or row
    tiles of one image."""
    n, _, h, wd = x.shape
    row_bytes = w2d.shape[0] * wd * x.element_size()
    images = max(1, min(n, KERNEL_TILE_BYTES // (row_bytes * h)))
    rows = h if images > 1 else max(1, min(h, KERNEL_TILE_BYTES // row_bytes))
    for a in range(0, n, images):
        for r0 in range(0, h, rows):
            yield slice(a, min(a + images, n)), r0, min(r0 + rows, h)


def _reach(k: int, h: int, w: int) -> int:
    """The size of the centred window of an odd ``k`` x ``k`` kernel whose taps can land in an
    ``h`` x ``w`` map: ``min(k, 2 * max(h, w) - 1)``; every other tap reads only the zero padding,
    whatever the position (the maps of a 32-pixel input are 8, 4, 2 and 1 pixels wide: at 1x1 a
    7x7 kernel has 1 live tap of 49).  Even kernels (asymmetric padding) are kept whole."""
    return k if k % 2 == 0 else min(k, 2 * max(h, w) - 1)


def _taps(t: Optional[Tensor], groups: int, k: int, kr: int) -> Optional[Tensor]:
    """The rows of a (G*k*k, ...) generator weight (or bias) for the centred ``kr`` x ``kr``
    taps of each group: (G*kr*kr, ...)."""
    if t is None:
        return None
    o = (k - kr) // 2
    v = t.view(groups, k, k, *t.shape[1:])[:, o:o + kr, o:o + kr]
    return v.reshape(groups * kr * kr, *t.shape[1:])


def _untaps(t: Optional[Tensor], groups: int, k: int, kr: int) -> Optional[Tensor]:
    """:func:`_taps` reversed for a gradient: zeros for the taps that never reach the map."""
    if t is None:
        return None
    o = (k - kr) // 2
    full = t.new_zeros(groups, k, k, *t.shape[1:])
    full[:, o:o + kr, o:o + kr] = t.view(groups, kr, kr, *t.shape[1:])
    return full.view(groups * k * k, *t.shape[1:])


def aggregate_pointwise(x, feat, w2d, bias, groups, k):
    """The I-D-DW forward without the full (N, G*k*k, H, W) kernel tensor: kernels are generated
    and aggregated step by step (:func:`_steps`), only for the taps that can reach the map
    (:func:`_reach`: the others multiply zero padding, so the result is the same)."""
    kr = _reach(k, x.shape[2], x.shape[3])
    if kr < k:
        return aggregate_pointwise(x, feat, _taps(w2d, groups, k, kr),
                                   _taps(bias, groups, k, kr), groups, kr)
    if k == 1:  # one tap (a 1x1 map's reach): the kernel is a per-position, per-group scale
        n, c, h, wd = x.shape
        fv = feat.reshape(n, feat.shape[1], h * wd)
        scale = torch.matmul(w2d, fv) if bias is None else torch.baddbmm(
            bias.view(1, -1, 1), w2d.expand(n, -1, -1), fv)
        return (x.reshape(n, groups, c // groups, h * wd) * scale.unsqueeze(2)).view(n, c, h, wd)
    if feat.shape[1] <= FUSED_MAX_REDUCED and x.shape[2] * x.shape[3] >= FUSED_MIN_POSITIONS:
        return _aggregate_pointwise_fused(x, feat, w2d, bias, groups, k)
    x = x.contiguous()
    n, c, h, wd = x.shape
    fv = feat.reshape(n, feat.shape[1], h * wd)
    out = x.new_empty(n, c, h, wd)
    for sl, r0, r1 in _steps(x, w2d):
        kern = _pointwise(w2d, bias, fv[sl, :, r0 * wd:r1 * wd])
        _aggregate_rows(x[sl], kern.view(kern.shape[0], groups, k * k, -1), k, out[sl], r0, r1)
    return out


def _aggregate_pointwise_fused(x, feat, w2d, bias, groups, k):
    """:func:`aggregate_pointwise` with the kernel generation inside the aggregation kernel
    (``mmdw_aggregate_pointwise_rows``): each thread generates the kernels of 16 positions into
    its own k*k*16 floats and aggregates them while in L1; no kernel tensor at all, and the input
    copied with its halo a row tile at a time."""
    x = x.contiguous()
    n, c, h, wd = x.shape
    if x.numel() == 0:
        return x.new_empty(n, c, h, wd)
    threads = _threads()
    fv = feat.reshape(n, feat.shape[1], h * wd).contiguous()
    w2d, bias = w2d.contiguous(), None if bias is None else bias.contiguous()
    stride = _workspace_stride(k)
    ws = x.new_empty(threads, stride)
    out = x.new_empty(n, c, h, wd)
    # the zero-extended input rows are copied a row tile at a time (at most KERNEL_TILE_BYTES),
    # so that a detection-size map never holds a second copy of its whole input
    rows = max(1, min(h, KERNEL_TILE_BYTES // (n * c * wd * x.element_size())))
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        _call('mmdw_aggregate_pointwise_rows', _rows_input(x, k, r0, r1), fv, w2d, bias, out, ws,
              stride, n, c, groups, fv.shape[1], h, wd, k, r0, r1, threads)
    return out


def aggregate_pointwise_backward(grad, x, feat, w2d, bias, groups, k):
    """Gradients of :func:`aggregate_pointwise` (grad x, grad feat, grad w2d, grad bias or
    None), the kernels regenerated step by step as in the forward: no full kernel tensor and no
    full kernel-gradient tensor either.  Taps that cannot reach the map (:func:`_reach`) have
    zero gradient: they are left out and their gradient rows written as zeros."""
    kr = _reach(k, x.shape[2], x.shape[3])
    if kr < k:
        gx, gf, gw, gb = aggregate_pointwise_backward(
            grad, x, feat, _taps(w2d, groups, k, kr), _taps(bias, groups, k, kr), groups, kr)
        return gx, gf, _untaps(gw, groups, k, kr), _untaps(gb, groups, k, kr)
    x, grad = x.contiguous(), grad.contiguous()
    n, c, h, wd = x.shape
    hw, threads = h * wd, _threads()
    fv = feat.reshape(n, feat.shape[1], hw)
    gx = torch.zeros(n, c, hw, dtype=x.dtype)
    gf = x.new_empty(n, feat.shape[1], hw)
    gw = torch.zeros_like(w2d)
    gb = torch.zeros_like(bias) if bias is not None else None
    for sl, r0, r1 in _steps(x, w2d):
        f_t, g_t = fv[sl, :, r0 * wd:r1 * wd], grad[sl]
        b = f_t.shape[0]
        kern = _pointwise(w2d, bias, f_t)  # (B, G*k*k, rows*W), column-masked below
        _call('mmdw_mask_columns', kern, b * groups, r1 - r0, wd, k, threads)
        # the input gradient goes straight into gx (its in-map part; row tiles add their halos)
        _call('mmdw_scatter_rows', g_t, kern, gx[sl], b, c, groups, h, wd, k, r0, r1, threads)
        xt = _rows_input(x[sl], k, r0, r1)
        _call('mmdw_correlate_rows', g_t, xt, kern, b, c, groups, h, wd, k, r0, r1, threads)
        _call('mmdw_mask_columns', kern, b * groups, r1 - r0, wd, k, threads)  # wrapped taps: 0
        for i in range(b):  # one product an image: a batched product with a transposed operand
            gw.addmm_(kern[i], f_t[i].t())  # ran 1.8x slower (MKL), and its sum was a pass more
        if gb is not None:
            gb += kern.sum((0, 2))
        gf[sl, :, r0 * wd:r1 * wd] = torch.matmul(w2d.t(), kern)
    return gx.view(n, c, h, wd), gf.view(feat.shape), gw, gb


def dynamic_depthwise(x: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
    """Runs on channels-last memory; returns (N, C, H, W) with channels-last strides."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    xl = x.permute(0, 2, 3, 1).contiguous()
    wt = kernels.reshape(n, c, k * k).transpose(1, 2).contiguous()
    out = x.new_empty(n, h, w, c)
    b = bias.contiguous() if bias is not None else None  # NULL: no bias
    _call('mmdw_ddw_nhwc', xl, wt, b, out, n, c, h, w, k, _threads())
    return out.permute(0, 3, 1, 2)


def dynamic_depthwise_backward(grad: Tensor, x: Tensor, kernels: Tensor,
                               bias: Optional[Tensor]) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Gradients of :func:`dynamic_depthwise` (grad x, grad kernels (N, C, k, k), grad bias or
    None) on channels-last memory: the input gradient is the forward kernel run on the output
    gradient with each image's kernels flipped, the kernel gradient a compiled correlation
    (``mmdw_ddw_nhwc_grad_kernels``).  An even k pads its flipped window on the other side:
    that case runs the reference's grouped-conv gradient."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    if k % 2 == 0:
        return reference.dynamic_depthwise_backward(grad, x, kernels, bias)
    threads = _threads()
    xl = x.permute(0, 2, 3, 1).contiguous()
    gl = grad.permute(0, 2, 3, 1).contiguous()
    flipped = kernels.reshape(n, c, k * k).flip(-1).transpose(1, 2).contiguous()
    gxl = x.new_empty(n, h, w, c)
    _call('mmdw_ddw_nhwc', gl, flipped, None, gxl, n, c, h, w, k, threads)
    gk = x.new_empty(n, k * k, c)
    _call('mmdw_ddw_nhwc_grad_kernels', xl, gl, gk, n, c, h, w, k, threads)
    gb = grad.sum((0, 2, 3)) if bias is not None else None
    return gxl.permute(0, 3, 1, 2), gk.transpose(1, 2).reshape(n, c, k, k), gb


class OpenMPBackend(PrimitiveBackend):
    """The compiled C/OpenMP kernels: CPU float32, every op (the D-DW backward of an even k on
    the reference's grouped-conv gradient)."""

    name = NAME
    primitives = sys.modules[__name__]
    devices = ('cpu', )
    dtypes = (torch.float32, )
    priority = 10

    def available(self) -> bool:
        return available()

    def require(self, *tensors) -> None:
        if not available():
            raise RuntimeError(f'MMDWNET_OPS_BACKEND={NAME} (alias cpu) was requested but the '
                               'compiled CPU kernels are not available (see the warning about '
                               'their build); use auto or reference')


#: the instance :mod:`mmdwnet.ops.backends` registers
BACKEND = OpenMPBackend()
