"""Memory read bandwidth of this machine: how fast the cores can stream a buffer of a given size, again and again.

    python benchmarks/bandwidth.py [--threads 2] [--sizes 64 128 256 2048] [--reps 5] [--work /tmp/convchat-bandwidth]

Decoding one token reads every weight a graph multiplies by once, so a graph of B bytes of weights cannot decode faster
than bandwidth / B tokens per second (the memory-bandwidth limit; chat_bench.py prints it per contender). The kernel is a
STREAM-style read (sum of 64-bit words, OpenMP over `--threads`, compiled here with gcc for x86-64-v3, i.e. AVX2 loads,
which both CPU kinds run), timed over whole passes of a buffer that was touched first; the best of `--reps` is kept
(other work on the machine only slows a pass down). A buffer as big as a model's weights measures what a decoder really
meets, the last-level cache included; a 2 GiB buffer measures main memory.

Results: benchmarks/results/bandwidth.json and bandwidth.md (made from the JSON by benchlib).
"""
import argparse, ctypes, subprocess, sys
from pathlib import Path
from benchlib import RESULTS, machine_info, column, write_result

KERNEL = r"""
#include <stddef.h>
#include <stdint.h>
#include <time.h>
static double now(void){ struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec*1e-9; }
void fill(uint64_t *a, size_t n, int threads){
  #pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; i++) a[i] = i;
}
double stream_read(const uint64_t *a, size_t n, int threads, int passes, uint64_t *sink){
  uint64_t s = 0; double t0 = now();
  for (int p = 0; p < passes; p++) {
    #pragma omp parallel for num_threads(threads) reduction(+:s) schedule(static)
    for (size_t i = 0; i < n; i++) s += a[i];
  }
  *sink = s; return now() - t0;
}
"""

def kernel(work:Path=Path('/tmp/convchat-bandwidth'))->ctypes.CDLL:
    "The read kernel, compiled once into `work`"
    work.mkdir(parents=True, exist_ok=True)
    so = work/'streamread.so'
    if not so.exists():
        (work/'streamread.c').write_text(KERNEL)
        subprocess.run(['gcc', '-O3', '-march=x86-64-v3', '-funroll-loops', '-fopenmp', '-shared', '-fPIC', '-o', str(so),
                        str(work/'streamread.c')], check=True)
    lib = ctypes.CDLL(str(so))
    lib.stream_read.restype = ctypes.c_double
    lib.stream_read.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64)]
    lib.fill.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lib

def read_bandwidth(size_mb:float, threads:int=2, reps:int=5, min_bytes:float=2e9, work:Path=Path('/tmp/convchat-bandwidth'))->float:
    "Best GB/s (1e9 bytes/s) of `reps` timings, each streaming a `size_mb` MB buffer as many times as it takes to read `min_bytes`"
    import numpy as np
    lib = kernel(work)
    n = int(size_mb*1e6)//8
    a = np.empty(n, dtype=np.uint64)
    lib.fill(a.ctypes.data, n, threads)
    passes, sink = max(1, round(min_bytes/(8*n))), ctypes.c_uint64()
    lib.stream_read(a.ctypes.data, n, threads, 1, ctypes.byref(sink))                 # warm the caches and the threads
    return max(passes*8*n/lib.stream_read(a.ctypes.data, n, threads, passes, ctypes.byref(sink))/1e9 for _ in range(reps))

def bandwidth_curve(sizes_mb, threads:int=2, reps:int=5)->dict:
    "{size MB: best read GB/s} for each buffer size"
    return {float(s): read_bandwidth(s, threads, reps) for s in sizes_mb}

def at_size(curve:dict, size_mb:float)->float:
    "The bandwidth a buffer of `size_mb` sees: interpolated in log size between the measured sizes, flat outside them"
    import numpy as np
    xs = sorted(curve)
    return float(np.interp(np.log(size_mb), np.log(xs), [curve[x] for x in xs]))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--sizes', type=float, nargs='*', default=[32, 64, 128, 256, 512, 2048], help='buffer sizes in MB')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--results', default=RESULTS, type=Path)
    ap.add_argument('--name', default='bandwidth', help='result file name (without .json)')
    a = ap.parse_args()
    machine = machine_info(a.threads)
    rows = [dict(size_mb=s, gbs=gbs, gbs_1thread=read_bandwidth(s, 1, a.reps)) for s, gbs in bandwidth_curve(a.sizes, a.threads, a.reps).items()]
    for r in rows: print(f"{r['size_mb']:7.0f} MB: {r['gbs']:6.1f} GB/s ({a.threads} threads), {r['gbs_1thread']:6.1f} GB/s (1 thread)", file=sys.stderr)
    res = dict(title='Memory read bandwidth',
               intro=("Best of several timed passes of a STREAM-style read (64-bit sums, AVX2 loads, OpenMP) over a buffer of each "
                      "size, read again and again as a decoder reads its weights. 1 GB = 1e9 bytes."),
               reproduce=f"python benchmarks/bandwidth.py --threads {a.threads} --reps {a.reps}", machine=machine,
               settings=dict(threads=a.threads, reps=a.reps, sizes_mb=a.sizes),
               tables=[dict(columns=[column('size_mb', 'buffer', '{:.0f} MB'), column('gbs', f'GB/s, {a.threads} threads', '{:.1f}', True),
                                     column('gbs_1thread', 'GB/s, 1 thread', '{:.1f}', True)], rows=rows)],
               notes=[f"{l.split(':')[0].strip()}: {l.split(':')[1].strip()}" for l in
                      subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines() if l.startswith(('L2', 'L3'))])
    print(write_result(a.name, res, a.results).read_text())

if __name__ == '__main__': main()
