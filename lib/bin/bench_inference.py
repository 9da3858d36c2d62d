"""PyTorch side of `npm run bench:inference` (lib/bin/bench_inference.ts): the same frozen-network work on
Debian's python3-torch (/usr/bin/python3), CPU, as many threads as the TypeScript side gives onnxruntime.

It reads one command per line on stdin, "<case> <reps>", runs the case reps times after one warm-up and answers
one JSON line {"case": ..., "ms": [...], "cpu_ms": [...]} (wall and process CPU time of each run), so that the
TypeScript side can interleave its runs with these.
Cases: "block4" (the bench's 4 x (conv3x3 64->64, GroupNorm(32), SiLU) forward, batch 16, 32x32) and
"teacher-heun" (EDM Heun with 18 noise levels, 35 evaluations, of the CIFAR-10 16x16 teacher architecture at
batch 64, the transcription in lib/bin/torch_reference.py with random weights: time does not depend on them).
"""
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import SongUNet  # noqa: E402

# lib/experiments/cifar10_teacher.ts CIFAR16_TEACHER_NET
TEACHER = dict(res=16, cin=3, cout=3, label_dim=10, mc=16, mult=[1, 2, 2], emb_mult=4, blocks=1, attn=[8])
BATCH = 64


def edm_sigmas(n, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    i = np.arange(n)
    s = (sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return [float(v) for v in s] + [0.0]


def block4():
    layers = []
    for _ in range(4):
        layers += [torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.GroupNorm(32, 64), torch.nn.SiLU()]
    net = torch.nn.Sequential(*layers).eval()
    x = torch.randn(16, 64, 32, 32)
    return lambda: net(x)


def teacher_heun():
    net = SongUNet(TEACHER).eval()
    z = torch.randn(BATCH, 3, TEACHER["res"], TEACHER["res"])
    labels = torch.nn.functional.one_hot(torch.arange(BATCH) % 10, 10).float()
    sigmas = edm_sigmas(18)

    def denoise(x, sigma):
        # D(x; sigma) = c_skip x + c_out F(c_in x; ln(sigma) / 4), sigma_data = 0.5
        s2, d2 = sigma * sigma, 0.25
        f = net(x / np.sqrt(s2 + d2), torch.full((x.shape[0],), np.log(sigma) / 4), labels)
        return x * (d2 / (s2 + d2)) + f * (sigma * 0.5 / np.sqrt(s2 + d2))

    def run():
        # EDM Algorithm 1: Euler steps with the trapezoidal correction except into sigma = 0
        x = z * sigmas[0]
        for s, t in zip(sigmas[:-1], sigmas[1:]):
            d = (x - denoise(x, s)) / s
            nxt = x + (t - s) * d
            if t > 0:
                nxt = x + (t - s) * (d + (nxt - denoise(nxt, t)) / t) / 2
            x = nxt
        return x

    return run


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count())
    torch.manual_seed(0)
    cases = {"block4": block4(), "teacher-heun": teacher_heun()}
    for line in sys.stdin:
        name, reps = line.split()
        fn = cases[name]
        ms, cpu = [], []
        with torch.inference_mode():
            fn()
            for _ in range(int(reps)):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                ms.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
        print(json.dumps({"case": name, "ms": ms, "cpu_ms": cpu}), flush=True)


if __name__ == "__main__":
    main()
