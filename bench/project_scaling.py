"""Project data-parallel scaling from a measured step: the tables of docs/distributed.md.

    python bench/project_scaling.py STEP_MS BATCH [GRADIENT_MB] [LATENCY_US]

STEP_MS: the measured time of one step (forward, backward, update) of one process on
BATCH samples; the compute per sample is taken as STEP_MS / BATCH (a step's work is linear
in the batch for these widths, apart from a small fixed part that this ignores, which
flatters small batches slightly). Ring all-reduce of S bytes over P machines on a link
of bandwidth BW: 2 (P - 1) / P * S / BW + 2 (P - 1) * latency (the latency of one message).
Efficiency of P machines at per-machine batch b: t(b) / (t(b) + allreduce), no overlap;
it stays above 80 % while t(b) >= 4 * allreduce, i.e. b >= 4 * allreduce / per-sample.
"""

import math
import sys


def allreduce_s(P, nbytes, gbit, latency_s, ring=True):
    """Ring: 2 (P - 1) messages in sequence; Rabenseifner's reduce-scatter + all-gather by
    recursive halving / doubling (what MPICH picks for mid-sized messages): 2 log2 P."""
    steps = 2 * (P - 1) if ring else 2 * math.log2(P)
    return 2 * (P - 1) / P * nbytes / (gbit * 1e9 / 8) + steps * latency_s


def main(step_ms, batch, gradient_mb=0.94, latency_us=10.0):
    per_sample = step_ms / 1e3 / batch
    nbytes, latency = gradient_mb * 1e6, latency_us * 1e-6
    print(f"per-sample compute {per_sample * 1e6:.1f} us; gradient {gradient_mb} MB; "
          f"latency {latency_us:g} us per message\n")
    print("| link | machines | all-reduce ring / log-P (ms) | efficiency at global batch "
          "1024 / 8192 / 65536 (ring) | global batch for 80 %: ring | log-P |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for gbit in (25, 100):
        for P in (8, 64, 512):
            ring, tree = (allreduce_s(P, nbytes, gbit, latency, r) for r in (True, False))
            eff = []
            for G in (1024, 8192, 65536):
                t = per_sample * G / P
                eff.append(f"{100 * t / (t + ring):.0f} %")
            g80 = [P * 4 * ar / per_sample for ar in (ring, tree)]
            print(f"| {gbit} Gb/s | {P} | {ring * 1e3:.2f} / {tree * 1e3:.2f} | {' / '.join(eff)} | "
                  f"{g80[0]:,.0f} | {g80[1]:,.0f} |")


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:]]
    main(*args)
