# sass_wgmma.py — a static check of wgmma's asynchronous registers in SASS (cuobjdump -sass): an HGMMA reads its
# A fragment registers and writes its accumulators after it issues, until a WARPGROUP.DEPBAR retires its group, and
# ptxas does not keep other instructions off them (the first lq4m tensor-core GEMM, 00ed3c5, had the next step's
# decode rewrite R88..R103 under a group still in flight: bench/results/gpu-lq4m-tc-2026-12-06.md). This walks a
# function's SASS in address order, the loop bodies (backward branches) twice so that groups left in flight at a
# back edge meet the next turn's code, and reports every instruction that writes an in-flight group's A registers
# or reads or writes its accumulators. Conservative: predicated code and skipped branches count as executed.
import re
import subprocess

LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Za-z0-9_.]*)\s*([^;]*);")
REG = re.compile(r"\bR(\d+)\b")
# instructions whose first operand is not a register they write
NO_DEST = ("ST", "STG", "STS", "STL", "STSM", "RED", "BRA", "BSSY", "BSYNC", "EXIT", "BAR", "WARPSYNC", "SYNCS",
           "UTMALDG", "UTMASTG", "UBLKCP", "WARPGROUP", "DEPBAR", "MEMBAR", "FENCE", "ERRBAR", "CGAERRBAR", "CCTL",
           "NOP", "YIELD", "CALL", "RET", "BPT", "ELECT", "RPCMOV")


def functions(sass):
    """{name: [(addr, pred, opcode, operands)]} of a cuobjdump -sass listing."""
    out, name = {}, None
    for line in sass.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            name = m.group(1)
            out[name] = []
            continue
        m = LINE.search(line)
        if m and name:
            out[name].append((int(m.group(1), 16), (m.group(2) or "").strip(), m.group(3), m.group(4).strip()))
    return out


def _width(op):
    """registers written from the first destination on"""
    parts = op.split(".")
    if parts[0] == "HGMMA":  # HGMMA.64xNx16.F32: 64 x N f32 over 128 threads = N / 2 registers (f16: N / 4)
        n = int(parts[1].split("x")[1])
        return n // 2 if "F32" in parts else n // 4
    if parts[0] == "HMMA":
        return 4 if "F32" in parts else 2
    if parts[0] == "CS2R" and "32" not in parts:
        return 2
    if parts[0] == "LDSM":  # LDSM.16.M88.4: four matrices, one register each
        return int(parts[-1]) if parts[-1] in ("1", "2", "4") else 1
    if parts[0] in ("DADD", "DMUL", "DFMA", "DSETP"):
        return 2
    for p in parts[1:]:
        if p in ("128", "U128"):
            return 4
        if p in ("64", "U64", "WIDE", "S64", "F64"):
            return 2
    return 1


def _regs(text):
    return [int(r) for r in REG.findall(text)]


def _access(op, operands):
    """(registers written, registers read) by one instruction (R only; RZ and uniform registers are not R\\d+)"""
    ops = [o.strip() for o in operands.split(",")] if operands else []
    base = op.split(".")[0]
    if base in NO_DEST or not ops:
        return set(), set(_regs(operands))
    dest_i = 1 if base == "SHFL" else 0  # SHFL.IDX PT, R3, ...: the predicate first
    if dest_i >= len(ops):
        return set(), set(_regs(operands))
    d = REG.fullmatch(ops[dest_i])
    written = set(range(int(d.group(1)), int(d.group(1)) + _width(op))) if d else set()
    read = set()
    for o in ops[:dest_i] + ops[dest_i + 1:]:
        read.update(_regs(o))
    return written, read


class _Group:
    def __init__(self):
        self.a, self.acc, self.first = set(), set(), None


def check(code):
    """Hazards in one function's instructions: [(addr of the offender, text, addr of the HGMMA it races)]."""
    if not code:
        return []
    addr_index = {a: i for i, (a, _, _, _) in enumerate(code)}
    last_exit = max((i for i, (_, p, op, _) in enumerate(code) if op == "EXIT" and not p), default=len(code) - 1)
    found = {}

    def run(lo, hi, pending, open_g, depth):
        i = lo
        while i <= hi:
            a, pred, op, operands = code[i]
            base = op.split(".")[0]
            if base == "HGMMA":
                ops = [o.strip() for o in operands.split(",")]
                acc0 = int(REG.fullmatch(ops[0]).group(1))
                g = open_g[0] or _Group()
                g.acc.update(range(acc0, acc0 + _width(op)))
                if REG.fullmatch(ops[1]):  # A from registers: four of them (m64 x k16 f16 over 128 threads)
                    a0 = int(REG.fullmatch(ops[1]).group(1))
                    g.a.update(range(a0, a0 + 4))
                g.first = g.first if g.first is not None else a
                open_g[0] = g
                if "gsb0" in operands:  # the group's last wgmma: committed
                    pending.append(g)
                    open_g[0] = None
            elif op.startswith("WARPGROUP.DEPBAR"):
                m = re.search(r"gsb0,\s*(0x[0-9a-f]+|\d+)", operands)
                keep = int(m.group(1), 0) if m else 0
                del pending[:max(0, len(pending) - keep)]
            else:
                written, read = _access(op, operands)
                for g in pending + ([open_g[0]] if open_g[0] else []):
                    if written & g.a or (written | read) & g.acc:
                        found.setdefault(a, ("%s %s" % (op, operands), g.first))
            if base == "BRA" and depth < 3:  # a backward branch inside the function's body: its loop once more
                m = re.match(r"(0x[0-9a-f]+)", operands.split(",")[-1].strip())
                t = int(m.group(1), 16) if m else None
                if t is not None and t < a and t in addr_index and i <= last_exit:
                    run(addr_index[t], i, pending, open_g, depth + 1)
            i += 1

    run(0, len(code) - 1, [], [None], 0)
    return sorted((a, t, h) for a, (t, h) in found.items())


def dump(cuobjdump, path):
    """cuobjdump -sass of an object file or binary, as text; RuntimeError with cuobjdump's message if it fails"""
    r = subprocess.run([cuobjdump, "-sass", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s -sass %s: rc %d: %s" % (cuobjdump, path, r.returncode, r.stderr.strip()[:300]))
    return r.stdout
