"""PyTorch transcriptions of the library's networks, for the fixture scripts (test/fixtures/) and the side-by-side
benchmark (lib/bin/bench_torch.py). Our own code, written to the published recipes:

- SongUNet: EDM's DDPM++ network (NVlabs/edm training/networks.py), reduced to what the DDPM++ configuration uses.
  State dict keys are the official ones; the config is a dict (res, cin, cout, label_dim, mc, mult, emb_mult, blocks,
  attn, dropout) mirroring lib/nn/unet.ts SongUNetConfig.
- LPIPS and LatentLPIPS (richzhang/PerceptualSimilarity lpips v0.1, mingukkang/elatentlpips) on VGG16 trunks at a
  width multiplier, with the official key layouts.

Only Debian's python3-torch is needed (/usr/bin/python3).
"""
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def gn(c):
    return nn.GroupNorm(min(32, c // 4), c, eps=1e-6)


class Conv(nn.Module):
    def __init__(self, cin, cout, k, up=False, down=False):
        super().__init__()
        self.up, self.down = up, down
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) / np.sqrt(cin * k * k))
        self.bias = nn.Parameter(torch.randn(cout) * 0.1)
        f = torch.ones(1, 1, 2, 2) / 4
        self.register_buffer("resample_filter", f if up or down else None)

    def forward(self, x):
        c = x.shape[1]
        if self.up:
            x = F.conv_transpose2d(x, (self.resample_filter * 4).tile([c, 1, 1, 1]), groups=c, stride=2)
        if self.down:
            x = F.conv2d(x, self.resample_filter.tile([c, 1, 1, 1]), groups=c, stride=2)
        return F.conv2d(x, self.weight, self.bias, padding=self.weight.shape[-1] // 2)


class Lin(nn.Module):
    def __init__(self, cin, cout, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / np.sqrt(cin))
        self.bias = nn.Parameter(torch.randn(cout) * 0.1) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Block(nn.Module):
    def __init__(self, cin, cout, emb, up=False, down=False, attention=False, dropout=0.0, random_norm=False):
        super().__init__()
        self.cin, self.cout, self.attention, self.dropout = cin, cout, attention, dropout
        self.norm0 = gn(cin)
        self.conv0 = Conv(cin, cout, 3, up=up, down=down)
        self.affine = Lin(emb, cout)
        self.norm1 = gn(cout)
        self.conv1 = Conv(cout, cout, 3)
        self.skip = Conv(cin, cout, 1, up=up, down=down) if (cin != cout or up or down) else None
        if attention:
            self.norm2 = gn(cout)
            self.qkv = Conv(cout, cout * 3, 1)
            self.proj = Conv(cout, cout, 1)
        if random_norm:  # non-trivial norm parameters, so that a port's use of them is tested
            for m in self.modules():
                if isinstance(m, nn.GroupNorm):
                    nn.init.normal_(m.weight, 1, 0.2)
                    nn.init.normal_(m.bias, 0, 0.2)

    def forward(self, x, emb):
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        x = F.silu(self.norm1(x + self.affine(emb)[:, :, None, None]))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * np.sqrt(0.5)
        if self.attention:
            q, k, v = self.qkv(self.norm2(x)).reshape(x.shape[0], x.shape[1], 3, -1).unbind(2)
            w = torch.einsum("ncq,nck->nqk", q, k / np.sqrt(k.shape[1])).softmax(dim=2)
            a = torch.einsum("nqk,nck->ncq", w, v)
            x = (self.proj(a.reshape(*x.shape)) + x) * np.sqrt(0.5)
        return x


class SongUNet(nn.Module):
    def __init__(self, c, random_norm=False):
        super().__init__()
        mc, emb = c["mc"], c["mc"] * c["emb_mult"]
        self.mc, self.label_dim = mc, c["label_dim"]

        def block(cin, cout, **kw):
            return Block(cin, cout, emb, dropout=c.get("dropout", 0.0), random_norm=random_norm, **kw)

        self.map_label = Lin(c["label_dim"], mc)
        self.map_layer0 = Lin(mc, emb)
        self.map_layer1 = Lin(emb, emb)
        self.enc = nn.ModuleDict()
        cout = c["cin"]
        for level, mult in enumerate(c["mult"]):
            res = c["res"] >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv(cout, mc, 3)
                cout = mc
            else:
                self.enc[f"{res}x{res}_down"] = block(cout, cout, down=True)
            for i in range(c["blocks"]):
                cin, cout = cout, mc * mult
                self.enc[f"{res}x{res}_block{i}"] = block(cin, cout, attention=res in c["attn"])
        skips = [b.cout if isinstance(b, Block) else mc for b in self.enc.values()]
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(c["mult"]))):
            res = c["res"] >> level
            if level == len(c["mult"]) - 1:
                self.dec[f"{res}x{res}_in0"] = block(cout, cout, attention=True)
                self.dec[f"{res}x{res}_in1"] = block(cout, cout)
            else:
                self.dec[f"{res}x{res}_up"] = block(cout, cout, up=True)
            for i in range(c["blocks"] + 1):
                cin, cout = cout + skips.pop(), mc * mult
                self.dec[f"{res}x{res}_block{i}"] = block(cin, cout, attention=(i == c["blocks"] and res in c["attn"]))
            if level == 0:
                self.dec[f"{res}x{res}_aux_norm"] = gn(cout)
                self.dec[f"{res}x{res}_aux_conv"] = Conv(cout, c["cout"], 3)

    def forward(self, x, noise, labels):
        half = self.mc // 2
        freqs = (1 / 10000) ** (torch.arange(half, dtype=torch.float32) / (half - 1))
        e = noise[:, None] * freqs[None]
        emb = torch.cat([e.cos(), e.sin()], 1).reshape(-1, 2, half).flip(1).reshape(-1, self.mc)
        emb = emb + self.map_label(labels * np.sqrt(self.label_dim))
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))
        skips = []
        for b in self.enc.values():
            x = b(x, emb) if isinstance(b, Block) else b(x)
            skips.append(x)
        tmp = None
        out = None
        for name, b in self.dec.items():
            if "aux_norm" in name:
                tmp = b(x)
            elif "aux_conv" in name:
                out = b(F.silu(tmp))
            else:
                if x.shape[1] != b.cin:
                    x = torch.cat([x, skips.pop()], 1)
                x = b(x, emb)
        return out


VGG16_STAGES = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


def stage_widths(width, stem=None):
    """Output channels of every conv at a width multiplier; `stem` replaces stage 1's (lib/nn/vgg.ts VggOptions)."""
    return [[stem if k == 0 and stem is not None else max(1, round(c * width)) for c in s] for k, s in enumerate(VGG16_STAGES)]


def vgg16_features(in_c, bn, stages):
    """torchvision vgg16(_bn).features: per conv [conv, (bn,) relu], a 2x2 max-pool after each stage."""
    layers = []
    c = in_c
    for stage in stages:
        for o in stage:
            layers.append(nn.Conv2d(c, o, 3, padding=1))
            if bn:
                layers.append(nn.BatchNorm2d(o))
            layers.append(nn.ReLU())
            c = o
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def slices(features, bounds):
    """Cut `features` into Sequentials whose children keep their original indices (so keys are slice{k}.{i})."""
    out = nn.Module()
    for k, (a, b) in enumerate(bounds):
        s = nn.Sequential()
        for i in range(a, b):
            s.add_module(str(i), features[i])
        out.add_module(f"slice{k + 1}", s)
    return out


def run_slices(net, x):
    taps = []
    for k in range(5):
        x = getattr(net, f"slice{k + 1}")(x)
        taps.append(x)
    return taps


class NetLin(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))


class Metric(nn.Module):
    """Trunk `net` with taps, heads lin0..lin4 and their ModuleList alias, as both official modules hold them."""

    def __init__(self, net, chns):
        super().__init__()
        self.net = net
        for k, c in enumerate(chns):
            setattr(self, f"lin{k}", NetLin(c))
        self.lins = nn.ModuleList([getattr(self, f"lin{k}") for k in range(5)])

    def heads(self, f0, f1):
        # sum_l mean_hw conv1x1_l((f0_l - f1_l)^2), per sample
        return sum(self.lins[k].model((f0[k] - f1[k]) ** 2).mean([2, 3]) for k in range(5)).flatten()


class LatentLPIPS(Metric):
    def __init__(self, in_c, width=1.0, stem=None):
        stages = stage_widths(width, stem)
        feats = vgg16_features(in_c, True, stages)
        # every pool of vgg16_bn.features, in order; the first three become identities
        pools = [i for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]
        for i in pools[:3]:
            feats[i] = nn.Identity()
        # elatentlpips CalibratedLatentVGG16BN: features[0:7], [7:14], [14:24], [24:34], [34:44]
        super().__init__(slices(feats, [(0, 7), (7, 14), (14, 24), (24, 34), (34, 44)]), [s[-1] for s in stages])

    def forward(self, x0, x1, l1=True, scaling=None, aug=None):
        if scaling is not None:
            shift, scale = scaling
            x0, x1 = (x0 - shift) * scale, (x1 - shift) * scale
        d_l1 = (x0 - x1).abs().mean([1, 2, 3])
        if aug is not None:
            x0, x1 = aug(x0), aug(x1)

        def norm(f):
            return f / torch.sqrt((f ** 2).sum(1, keepdim=True) + 1e-8)

        f0 = [norm(f) for f in run_slices(self.net, x0)]
        f1 = [norm(f) for f in run_slices(self.net, x1)]
        d = self.heads(f0, f1)
        return d + d_l1 if l1 else d


class LPIPS(Metric):
    def __init__(self, width=1.0):
        stages = stage_widths(width)
        feats = vgg16_features(3, False, stages)
        # lpips pretrained_networks.vgg16: features[0:4], [4:9], [9:16], [16:23], [23:30]
        super().__init__(slices(feats, [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]), [s[-1] for s in stages])
        self.torchvision_state = lambda: OrderedDict(("features." + k, v) for k, v in feats.state_dict().items())

    def forward(self, x0, x1):
        shift = torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None]
        scale = torch.tensor([0.458, 0.448, 0.450])[None, :, None, None]

        def norm(f):
            return f / (torch.sqrt((f ** 2).sum(1, keepdim=True)) + 1e-10)

        f0 = [norm(f) for f in run_slices(self.net, (x0 - shift) / scale)]
        f1 = [norm(f) for f in run_slices(self.net, (x1 - shift) / scale)]
        return self.heads(f0, f1)
