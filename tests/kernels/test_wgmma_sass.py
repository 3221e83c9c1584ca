# test_wgmma_sass.py — the wgmma kernels' SASS keeps other instructions off the registers of wgmma groups in flight
# (sass_wgmma.py): first the checker on hand-written SASS (each hazard it must report, and the same code made safe),
# then every *_sm90a object of the build (cuobjdump from the venv's nvidia-cuda-cuobjdump, setup_venv.sh; skips where
# the build has no sm_90a objects or no cuobjdump is found). Needs no GPU.
# QN_TEST_LABELS: cpu cuda_build
import glob
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sass_wgmma  # noqa: E402


def sass(body):
    """a one-function listing of 'ADDR TEXT' lines, as cuobjdump prints them"""
    lines = ["        Function : k"]
    for ln in body.strip().splitlines():
        addr, text = ln.split(None, 1)
        lines.append("        /*%s*/                   %s ;  /* 0x0 */" % (addr, text))
    return "\n".join(lines)


def hazards(body):
    return [a for a, _, _ in sass_wgmma.check(sass_wgmma.functions(sass(body))["k"])]


GROUP = """
0100 WARPGROUP.ARRIVE
0110 HGMMA.64x128x16.F32 R24, R88, gdesc[UR8], R24
0120 HGMMA.64x128x16.F32 R24, R92, gdesc[UR8], R24, gsb0
"""

CASES = [
    # (name, SASS after the group, addresses that must be reported)
    ("A rewritten in flight (00ed3c5's bug)", "0130 LOP3.LUT R90, R109, 0xf, RZ, 0xc0, !PT\n0140 WARPGROUP.DEPBAR.LE gsb0, 0x0\n0150 EXIT", [0x130]),
    ("A rewritten after the wait", "0130 WARPGROUP.DEPBAR.LE gsb0, 0x0\n0140 LOP3.LUT R90, R109, 0xf, RZ, 0xc0, !PT\n0150 EXIT", []),
    ("A read in flight (wgmma only reads it)", "0130 IADD3 R8, R90, 0x1, RZ\n0140 WARPGROUP.DEPBAR.LE gsb0, 0x0\n0150 EXIT", []),
    ("accumulator read in flight", "0130 STG.E desc[UR4][R2.64], R60\n0140 WARPGROUP.DEPBAR.LE gsb0, 0x0\n0150 EXIT", [0x130]),
    ("accumulator written in flight", "0130 IMAD.MOV.U32 R150, RZ, RZ, RZ\n0140 MOV R87, RZ\n0150 WARPGROUP.DEPBAR.LE gsb0, 0x0\n0160 EXIT", [0x140]),
    ("a 128-bit load over A", "0130 LDG.E.128 R92, desc[UR4][R2.64]\n0140 WARPGROUP.DEPBAR.LE gsb0, 0x0\n0150 EXIT", [0x130]),
    ("a wide multiply-add over A", "0130 IMAD.WIDE R90, R3, 0x4, R4\n0140 WARPGROUP.DEPBAR.LE gsb0, 0x0\n0150 EXIT", [0x130]),
    ("wait for all but one: the last group stays", "0130 WARPGROUP.DEPBAR.LE gsb0, 0x1\n0140 MOV R91, RZ\n0150 WARPGROUP.DEPBAR.LE gsb0, 0x0\n0160 EXIT", [0x140]),
]

# a loop whose group is still in flight at the back edge: the next turn's first write to its A must be reported
LOOP_BAD = """
0100 LOP3.LUT R88, R109, 0xf, RZ, 0xc0, !PT
0110 WARPGROUP.ARRIVE
0120 HGMMA.64x128x16.F32 R24, R88, gdesc[UR8], R24, gsb0
0130 WARPGROUP.DEPBAR.LE gsb0, 0x1
0140 @!P0 BRA 0x100
0150 WARPGROUP.DEPBAR.LE gsb0, 0x0
0160 EXIT
"""
LOOP_OK = LOOP_BAD.replace("0130 WARPGROUP.DEPBAR.LE gsb0, 0x1", "0130 WARPGROUP.DEPBAR.LE gsb0, 0x0")
# two buffers alternating (what lq4m_tc does): each is rewritten only after the group that read it is retired
LOOP_TWO = """
0100 LOP3.LUT R88, R109, 0xf, RZ, 0xc0, !PT
0110 WARPGROUP.ARRIVE
0120 HGMMA.64x128x16.F32 R24, R88, gdesc[UR8], R24, gsb0
0130 WARPGROUP.DEPBAR.LE gsb0, 0x1
0140 LOP3.LUT R104, R109, 0xf, RZ, 0xc0, !PT
0150 WARPGROUP.ARRIVE
0160 HGMMA.64x128x16.F32 R24, R104, gdesc[UR8], R24, gsb0
0170 WARPGROUP.DEPBAR.LE gsb0, 0x1
0180 @!P0 BRA 0x100
0190 WARPGROUP.DEPBAR.LE gsb0, 0x0
01a0 EXIT
"""


def cuobjdump():
    for p in sorted(glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "nvidia", "*", "bin",
                                           "cuobjdump"))):
        return p
    return shutil.which("cuobjdump") or next(
        (p for p in ("/usr/local/cuda/bin/cuobjdump",) if os.path.exists(p)), None)


def main():
    fails = []
    for name, tail, want in CASES:
        got = hazards(GROUP + tail)
        if got != want:
            fails.append("%s: reported %s, expected %s" % (name, [hex(a) for a in got], [hex(a) for a in want]))
    for name, body, want in (("loop, group in flight at the back edge", LOOP_BAD, [0x100]),
                             ("loop, group retired before the back edge", LOOP_OK, []),
                             ("loop, two alternating buffers", LOOP_TWO, [])):
        got = hazards(body)
        if got != want:
            fails.append("%s: reported %s, expected %s" % (name, [hex(a) for a in got], [hex(a) for a in want]))
    print("checker: %d hand-written cases, %d failed" % (len(CASES) + 3, len(fails)))

    build = os.environ.get("QN_BUILD_DIR", "")
    objs = sorted(glob.glob(os.path.join(build, "**", "*_sm90a.cu.o"), recursive=True)) if build else []
    tool = cuobjdump()
    skip = None
    if not objs:
        skip = "no *_sm90a objects in QN_BUILD_DIR=%r (a build without nvcc or without sm_90)" % build
    elif not tool:
        skip = "no cuobjdump (pip nvidia-cuda-cuobjdump into the venv: scripts/setup_venv.sh)"
    else:
        kernels = 0
        for o in objs:
            try:
                listing = sass_wgmma.dump(tool, o)
            except RuntimeError as e:
                fails.append(str(e))
                continue
            for name, code in sass_wgmma.functions(listing).items():
                if not any(op.startswith("HGMMA") for _, _, op, _ in code):
                    continue
                kernels += 1
                hz = sass_wgmma.check(code)
                print("%s: %s: %d instructions, %d hazards" % (os.path.basename(o), name[:60], len(code), len(hz)))
                for a, text, g in hz[:10]:
                    fails.append("%s %s: %04x %s writes or reads registers of the wgmma group from %04x in flight"
                                 % (os.path.basename(o), name[:60], a, text, g))
        if kernels == 0:
            fails.append("the sm_90a objects hold no HGMMA: the wgmma kernels did not compile to wgmma")
    for f in fails:
        print("FAIL:", f)
    if fails:
        return 1
    if skip:
        print("skip (the checker's own cases passed):", skip)
        return 77
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
