#!/usr/bin/env bash
# Runs the real GUI under Xvfb (Mesa llvmpipe through the glow renderer) on the simulated
# device, saves a screenshot after 2 s of capture in the dark and the light theme, and
# checks each is a real PNG of the window's size that is not blank.
# Usage: tests/gui/screenshot.sh [OUT_DIR]   (installs xvfb and Mesa with apt-get if missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-target/gui-screenshots}"
mkdir -p "$out"
if ! command -v xvfb-run >/dev/null || ! ls /usr/lib/*/dri/*swrast* >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq xvfb xauth libgl1-mesa-dri >/dev/null
fi
cargo build --locked --quiet --features "${ISOSCOPE_FEATURES:-}"
bin="${CARGO_TARGET_DIR:-target}/debug/isoscope"
for theme in dark light; do
  xvfb-run -a -s "-screen 0 1280x800x24" \
    "$bin" screenshot --device sim --seconds 2 --theme "$theme" --out "$out/scope-$theme.png"
done
python3 - "$out"/scope-dark.png "$out"/scope-light.png <<'PY'
import struct, sys, zlib
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) & 0xffffffff == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0], f"{path}: bad CRC"
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert (w, h) == (1280, 800), f"{path}: {w}x{h}, expected 1280x800"
    assert depth == 8 and ctype in (2, 6), f"{path}: depth {depth} colour type {ctype}"
    raw = zlib.decompress(idat)
    bpp = 4 if ctype == 6 else 3
    stride = w * bpp + 1
    # Sample pixels from every 8th row (filter bytes make exact decoding needless for a count
    # of distinct byte patterns in unfiltered rows; count distinct rows' content instead).
    distinct_rows = len({raw[y * stride + 1:(y + 1) * stride] for y in range(0, h, 8)})
    distinct_bytes = len(set(raw[1:stride * h:97]))
    assert distinct_rows > 20 and distinct_bytes > 16, f"{path}: looks blank ({distinct_rows} rows, {distinct_bytes} byte values)"
    print(f"{path}: PNG {w}x{h}, {distinct_rows} distinct sampled rows, {distinct_bytes} byte values: ok")
PY
echo "screenshot: 2 passed, 0 failed"
