"""The PyTorch side of `npm run bench -- --compare` (lib/bin/bench.ts): the same cases, same shapes, same batch.

Run by bench.ts as a server that answers one JSON line per request line on stdin, so that the two engines take turns
in one run:
  {"case": "block4", "mode": "forward" | "step", "reps": 3}   ->  {"ms": [...], "cpu": [...]}   (wall, process CPU)
  {"case": "block4", "mode": "drop"}                          ->  {"ms": [], "cpu": []}   (frees the case's network)
Standalone, it prints the median over --steps timed runs after --warmup of every case:
  /usr/bin/python3 lib/bin/bench_torch.py --threads 2 [--steps 5] [--warmup 2] [--cases block4,teacher16]

Cases (ids shared with bench.ts):
  block4        4 x (conv3x3 64->64, GroupNorm(32) + SiLU), batch 16, 32x32; loss mean(y^2), Adam
  conv2         2 x conv3x3 64->64, batch 16, 32x32; loss mean(y^2), Adam
  teacher16     EDM loss + Adam (grad-norm clip 1) of SongUNet 16x16, 16 ch, mult 1,2,2, 1 block, attention at 8,
                dropout 0.1, batch 32 (CIFAR16_TEACHER_NET); forward: the network in eval mode
  ddpmpp32      the same with SongUNet 32x32, 32 ch, mult 1,2,2, 2 blocks, attention at 16
  latent-lpips  LatentLPIPS on 32x32x32 latents (stand-in trunk: VGG16-BN at 1/8 width, stage 1 64 wide), batch 8;
                step = forward + gradient with respect to the first input
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import LatentLPIPS, SongUNet  # noqa: E402

CASES = ["block4", "conv2", "teacher16", "ddpmpp32", "latent-lpips"]


def adam_case(net, x):
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def forward():
        with torch.no_grad():
            net(x)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = net(x).square().mean()
        loss.backward()
        opt.step()

    return forward, step


def conv_stack(blocks, norm):
    layers = []
    for _ in range(blocks):
        layers.append(nn.Conv2d(64, 64, 3, padding=1))
        if norm:
            layers += [nn.GroupNorm(32, 64), nn.SiLU()]
    return nn.Sequential(*layers)


def edm_case(cfg, batch):
    net = SongUNet(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    res = cfg["res"]
    y = torch.randn(batch, 3, res, res) * 0.5
    labels = F.one_hot(torch.arange(batch) % 10, 10).float()
    sigma_data = 0.5

    def denoise(x, sigma):
        # D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)
        s = sigma[:, None, None, None]
        c_skip = sigma_data ** 2 / (s ** 2 + sigma_data ** 2)
        c_out = s * sigma_data / (s ** 2 + sigma_data ** 2).sqrt()
        c_in = 1 / (s ** 2 + sigma_data ** 2).sqrt()
        return c_skip * x + c_out * net(c_in * x, sigma.log() / 4, labels)

    def forward():
        net.eval()
        with torch.no_grad():
            denoise(y, torch.full([batch], 1.0))

    def step():
        # EDM loss: ln sigma ~ N(-1.2, 1.2^2), lambda = (sigma^2 + sd^2) / (sigma sd)^2
        net.train()
        opt.zero_grad(set_to_none=True)
        sigma = (torch.randn(batch) * 1.2 - 1.2).exp()
        weight = ((sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2)[:, None, None, None]
        noisy = y + torch.randn_like(y) * sigma[:, None, None, None]
        loss = (weight * (denoise(noisy, sigma) - y) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    return forward, step


def latent_lpips_case():
    lat = LatentLPIPS(32, width=1 / 8, stem=64).eval()
    x0 = torch.randn(8, 32, 32, 32)
    x1 = torch.randn(8, 32, 32, 32)

    def forward():
        with torch.no_grad():
            lat(x0, x1)

    def step():
        x = x0.clone().requires_grad_(True)
        lat(x, x1).sum().backward()

    return forward, step


def make_case(name):
    if name == "block4":
        return adam_case(conv_stack(4, True), torch.randn(16, 64, 32, 32))
    if name == "conv2":
        return adam_case(conv_stack(2, False), torch.randn(16, 64, 32, 32))
    if name == "teacher16":
        return edm_case(dict(res=16, cin=3, cout=3, label_dim=10, mc=16, mult=[1, 2, 2], emb_mult=4, blocks=1, attn=[8], dropout=0.1), 32)
    if name == "ddpmpp32":
        return edm_case(dict(res=32, cin=3, cout=3, label_dim=10, mc=32, mult=[1, 2, 2], emb_mult=4, blocks=2, attn=[16], dropout=0.1), 32)
    if name == "latent-lpips":
        return latent_lpips_case()
    raise ValueError(f"bench_torch: unknown case {name!r}; cases: {', '.join(CASES)}")


def timed(f, reps):
    """Wall and process CPU ms (all threads) of each run."""
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        f()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return wall, cpu


def serve():
    cases = {}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            name, mode = req["case"], req["mode"]
            if mode == "drop":
                cases.pop(name, None)
                ms, cpu = [], []
            else:
                if name not in cases:
                    torch.manual_seed(0)
                    cases[name] = make_case(name)
                forward, step = cases[name]
                ms, cpu = timed(forward if mode == "forward" else step, int(req.get("reps", 1)))
            print(json.dumps({"ms": ms, "cpu": cpu}), flush=True)
        except Exception as e:  # the caller prints the message and stops
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, required=True, help="torch.set_num_threads (the wasm engine's thread count)")
    p.add_argument("--serve", action="store_true", help="answer JSON requests on stdin (used by bench.ts)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.serve:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
        serve()
        return
    results = {}
    for name in a.cases.split(","):
        torch.manual_seed(0)
        forward, step = make_case(name)
        row = {}
        for mode, f in (("forward", forward), ("step", step)):
            timed(f, a.warmup)
            row[mode] = statistics.median(timed(f, a.steps)[0])
        results[name] = row
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}, indent=1))


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
