"""gen_model.py: full-network references for the MultiGrain ResNet: torchvision resnet18/resnet50
with random weights and random BN statistics, a GeM(p) head, a linear classifier on the raw pooled
vector and the L2-normalised embedding (recipe §1.1-§1.2). For each case it writes the weights, the
input, every stage output, the pooled vector, logits and embedding, the gradients of a fixed
random linear functional of (logits, embedding) w.r.t. every parameter and p, and the weights and
BN running statistics after one SGD step (momentum 0.9, weight decay 1e-4, lr 0.1).
Usage: gen_model.py OUTDIR"""
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_numpy  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.set_num_threads(1)


class MultiGrain(torch.nn.Module):
    def __init__(self, arch, num_classes, p):
        super().__init__()
        self.net = getattr(torchvision.models, arch)(num_classes=num_classes)
        self.p = torch.nn.Parameter(torch.tensor(float(p)))

    def forward(self, x):
        n = self.net
        stages = {}
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        stages["stem"] = x
        for i in range(1, 5):
            x = getattr(n, f"layer{i}")(x)
            stages[f"layer{i}"] = x
        e = x.clamp(min=1e-6).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)
        logits = n.fc(e)
        emb = e / (e.norm(dim=1, keepdim=True) + 1e-6)
        return stages, e, logits, emb


def state(model):
    sd = {k: v.detach().numpy().copy() for k, v in model.net.state_dict().items()}
    # pool.p sits before fc.weight in our order; names are what matter
    sd["pool.p"] = np.array(model.p.detach().numpy(), dtype=np.float32).reshape(())
    return sd


def case(name, arch, num_classes, p, n, h, w, seed):
    torch.manual_seed(seed)
    model = MultiGrain(arch, num_classes, p)
    # non-trivial BN affine and running statistics (all-default BN would hide mistakes)
    with torch.no_grad():
        for mod in model.net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.num_batches_tracked.fill_(3)
    weights = state(model)
    x = torch.randn(n, 3, h, w)
    ref = {"x": x.numpy()}
    # eval mode forward
    model.eval()
    with torch.no_grad():
        stages, e, logits, emb = model(x)
    ref["eval.pooled"], ref["eval.logits"], ref["eval.embedding"] = e.numpy(), logits.numpy(), emb.numpy()
    for k, v in stages.items():
        ref[f"eval.{k}"] = v.numpy()
    # train mode forward + backward of L = <A, logits> + <B, emb>
    model.train()
    stages, e, logits, emb = model(x)
    A = torch.randn_like(logits)
    B = torch.randn_like(emb)
    ref["A"], ref["B"] = A.numpy(), B.numpy()
    loss = (A * logits).sum() + (B * emb).sum()
    loss.backward()
    ref["train.pooled"], ref["train.logits"], ref["train.embedding"] = (
        e.detach().numpy(), logits.detach().numpy(), emb.detach().numpy())
    for k, v in stages.items():
        ref[f"train.{k}"] = v.detach().numpy()
    for k, prm in model.net.named_parameters():
        ref[f"grad.{k}"] = prm.grad.numpy()
    ref["grad.pool.p"] = model.p.grad.numpy().reshape(())
    # running statistics after the training forward
    for k, v in model.net.state_dict().items():
        if "running" in k or "num_batches" in k:
            ref[f"after.{k}"] = v.numpy()
    # one SGD step on the network parameters (p stays fixed, as in joint training)
    opt = torch.optim.SGD(model.net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt.step()
    for k, prm in model.net.named_parameters():
        ref[f"step.{k}"] = prm.detach().numpy()
    st_numpy.save(os.path.join(out, f"{name}_weights.safetensors"), weights,
                  {"arch": arch, "num_classes": num_classes})
    st_numpy.save(os.path.join(out, f"{name}_ref.safetensors"), ref)


case("r18", "resnet18", 10, 3.0, 2, 64, 64, 1)
case("r50", "resnet50", 7, 3.0, 2, 64, 64, 2)
