import time, torch, sys
import bitsandbytes as bnb
import bitsandbytes.functional as F
torch.set_num_threads(1)
def best(fn, min_s=0.5):
    fn(); b=1e9; t0=time.perf_counter()
    while time.perf_counter()-t0 < min_s:
        s=time.perf_counter(); fn(); b=min(b, time.perf_counter()-s)
    return b
for (N,K) in [(4096,4096),(14336,4096),(4096,14336)]:
    W = torch.randn(N, K) * 0.02
    Wq, st = F.quantize_4bit(W.to(torch.float32), blocksize=64, quant_type="nf4")
    for n in [1,32,128]:
        x = torch.randn(n, K)
        t_f32 = best(lambda: torch.nn.functional.linear(x, W))
        xb = x.to(torch.bfloat16); Wb = W.to(torch.bfloat16)
        t_bf16 = best(lambda: torch.nn.functional.linear(xb, Wb))
        t_nf4 = best(lambda: bnb.matmul_4bit(x, Wq.t(), quant_state=st))
        fl = 2*N*K*n
        print(f"{N}x{K} n={n}: torch fp32 {t_f32*1e6:.0f} us ({fl/t_f32*1e-9:.0f} GFLOP/s)  torch bf16 {t_bf16*1e6:.0f} us ({fl/t_bf16*1e-9:.0f})  bnb nf4 {t_nf4*1e6:.0f} us ({fl/t_nf4*1e-9:.0f})", flush=True)
print("torch", torch.__version__, "bnb", bnb.__version__)
