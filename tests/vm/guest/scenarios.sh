#!/bin/sh
# Runs in the VM guest (busybox sh, as root). Each scenario prints exactly one line:
#   SCENARIO <name> PASS|FAIL <details and figures>
# The host (tests/vm/run) collects them.

SIGNAL=chirp:100-8000
VD_PID=""
PORT=""
# The host controller this boot tests: vhci (USB/IP in the guest), or xhci / ehci / ehci-4g
# (the virtual device served over usbredir by the host, on QEMU's emulated controller).
HC=$(sed -n 's/.*isoscope\.hc=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$HC" ] || HC=vhci

result() { echo "SCENARIO $1 $2 $3"; }

# The sysfs directory of the attached virtual device (idVendor 1209, idProduct 0001).
device_dir() {
  for d in /sys/bus/usb/devices/*; do
    [ "$(cat "$d/idVendor" 2>/dev/null)" = 1209 ] && [ "$(cat "$d/idProduct" 2>/dev/null)" = 0001 ] && { echo "$d"; return 0; }
  done
  return 1
}

# The driver bound to interface 0 of the virtual device, or "none".
ac_driver() {
  d=$(device_dir) || { echo none; return; }
  l=$(readlink "$d:1.0/driver" 2>/dev/null) || { echo none; return; }
  basename "$l"
}

# Waits up to 20 s for snd-usb-audio to be bound to the control interface.
wait_driver() {
  n=200
  while [ "$n" -gt 0 ]; do [ "$(ac_driver)" = snd-usb-audio ] && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}

wait_for() { # wait_for SECONDS COMMAND...
  n=$(($1 * 10)); shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}

# The ALSA card number of the virtual device (snd-usb-audio's usbid file says 1209:0001),
# once its capture stream is registered (pcm0c needs verbose procfs; stream0 is
# snd-usb-audio's own).
card_of_device() {
  for f in /proc/asound/card*/usbid; do
    grep -q "1209:0001" "$f" 2>/dev/null || continue
    d=${f%/usbid}
    if [ -e "$d/pcm0c" ] || [ -e "$d/stream0" ]; then echo "${d#/proc/asound/card}"; return 0; fi
  done
  return 1
}

# plug [virtual-device options]: a fresh virtual device, plugged in: on vhci served in the
# guest and attached over USB/IP; on a usbredir controller served by the host (asked for on
# the console, see tests/vm/run) and plugged in by QEMU.
plug() {
  if [ "$HC" != vhci ]; then
    echo "ISOSCOPE-HOST plug $*"
    wait_for 30 device_dir >/dev/null || { echo "vm-guest: device did not enumerate"; dmesg | tail -20; return 1; }
    wait_driver || { echo "vm-guest: snd-usb-audio did not bind"; dmesg | tail -30; }
    return 0
  fi
  isoscope virtual-device --listen 127.0.0.1:3240 "$@" > /tmp/vd.log 2>&1 &
  VD_PID=$!
  wait_for 10 sh -c 'grep -q "serving" /tmp/vd.log' || { echo "vm-guest: virtual device did not start"; cat /tmp/vd.log; return 1; }
  PORT=$(isoscope attach --host 127.0.0.1:3240 2>/tmp/attach.log) || { cat /tmp/attach.log; return 1; }
  wait_for 20 device_dir >/dev/null || { echo "vm-guest: device did not enumerate"; dmesg | tail -20; return 1; }
  wait_driver || { echo "vm-guest: snd-usb-audio did not bind"; dmesg | tail -30; }
  return 0
}

unplug() {
  if [ "$HC" != vhci ]; then
    echo "ISOSCOPE-HOST unplug"
    wait_for 10 sh -c '! ls /sys/bus/usb/devices/ | grep -q "^[0-9]*-"' >/dev/null 2>&1
    sleep 0.5
    return 0
  fi
  [ -n "$PORT" ] && isoscope detach --port "$PORT" 2>/dev/null
  wait_for 10 sh -c '! ls /sys/bus/usb/devices/ | grep -q .' >/dev/null 2>&1
  [ -n "$VD_PID" ] && kill "$VD_PID" 2>/dev/null && wait "$VD_PID" 2>/dev/null
  VD_PID=""; PORT=""
  sleep 0.5
}

# QEMU's xHCI skips intervals silently when the host is busy (packets lost with no status);
# there the losses are counted against the device's own sequence and shown, not failed.
# Everywhere else (vhci, EHCI) a single lost packet fails the scenario.
losses_ok() { # losses_ok COUNT
  [ "${1:-0}" = 0 ] || [ "$HC" = xhci ]
}

r0() { printf '%.0f' "${1:-0}"; } # a figure rounded for a result line
r2() { printf '%.2f' "${1:-0}"; }

json() { # json FILE KEY -> the value of a top-level number/string field
  sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$1" | head -1
}

echo "vm-guest: kernel $(uname -r), usbfs_memory_mb $(cat /sys/module/usbcore/parameters/usbfs_memory_mb)"

# kernel: every module of /modules.list is loaded, vhci-hcd's controllers are there,
# usbfs_memory_mb reads a number, and devtmpfs gives /dev/bus/usb.
s_kernel() {
  problems=""
  missing=""
  while read -r m; do
    name=$(basename "$m" .ko | tr - _)
    grep -q "^$name " /proc/modules || missing="$missing $name"
  done < /modules.list
  [ -z "$missing" ] || problems="$problems modules not loaded:$missing;"
  nmod=$(wc -l < /modules.list)
  case $HC in
    vhci)
      [ -d /sys/devices/platform/vhci_hcd.0 ] || problems="$problems no /sys/devices/platform/vhci_hcd.0;"
      hcd="$(find /sys/devices/platform -maxdepth 1 -name 'vhci_hcd.*' | wc -l) vhci_hcd controllers" ;;
    *)
      want_drv=$(case $HC in xhci) echo xhci_hcd ;; *) echo ehci-pci ;; esac)
      pci=$(ls -d /sys/bus/pci/drivers/"$want_drv"/0000:* 2>/dev/null | head -1)
      if [ -n "$pci" ]; then
        hcd="controller $(basename "$pci") bound to $want_drv, DMA mask $(cat "$pci/dma_mask_bits" 2>/dev/null) bits"
      else
        problems="$problems no PCI device bound to $want_drv;"; hcd="no $want_drv"
      fi
      if [ "$HC" = ehci-4g ]; then
        mount -t debugfs none /sys/kernel/debug 2>/dev/null
        memk=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)
        slabs=$(cat /sys/kernel/debug/swiotlb/io_tlb_nslabs 2>/dev/null)
        [ "${memk:-0}" -gt 4194304 ] || problems="$problems guest memory ${memk} KiB is not above 4 GiB;"
        [ "${slabs:-0}" -gt 0 ] || problems="$problems no swiotlb (io_tlb_nslabs '$slabs');"
        [ "$(cat "$pci/dma_mask_bits" 2>/dev/null)" = 32 ] || problems="$problems EHCI DMA mask is not 32 bits;"
        hcd="$hcd, MemTotal $memk KiB, swiotlb $slabs slabs"
      fi ;;
  esac
  mb=$(cat /sys/module/usbcore/parameters/usbfs_memory_mb 2>/dev/null)
  case "$mb" in '' | *[!0-9]*) problems="$problems usbfs_memory_mb reads '$mb';" ;; esac
  if [ -d /dev/bus/usb ]; then
    echo "vm-guest: ls -R /dev/bus/usb"
    ls -R /dev/bus/usb
    nodes=$(find /dev/bus/usb -type c | wc -l)
  else
    problems="$problems no /dev/bus/usb;"
    nodes=0
  fi
  figures="kernel $(uname -r), $nmod modules loaded, $hcd, usbfs_memory_mb $mb, /dev/bus/usb has $nodes device nodes (root hubs)"
  if [ -z "$problems" ]; then
    result kernel PASS "$figures"
  else
    result kernel FAIL "$problems $figures"
  fi
}

# isoscope-runs: the release binary and its libraries work in the guest, and a simulated
# capture verifies frame by frame.
s_isoscope_runs() {
  version=$(isoscope --version 2>&1); vrc=$?
  rm -f /tmp/s.json
  isoscope capture --device sim --seconds 1 --stats-json /tmp/s.json --quiet 2>/tmp/sim.log; rc=$?
  ok=$(json /tmp/s.json frames_verified); bad=$(json /tmp/s.json frames_mismatched)
  mode=$(json /tmp/s.json mode_used); urbs=$(json /tmp/s.json urbs)
  figures="'$version', sim capture: mode $mode, urbs $urbs, frames verified $ok mismatched $bad"
  if [ "$vrc" = 0 ] && [ "$rc" = 0 ] && grep -q '"frames_mismatched": 0' /tmp/s.json && [ "${ok:-0}" -gt 0 ]; then
    result isoscope-runs PASS "$figures"
  else
    result isoscope-runs FAIL "version exit $vrc, capture exit $rc: $figures; $(tail -3 /tmp/sim.log | tr '\n' ' ')"
  fi
}

# 1. snd-usb-audio binds to the virtual device and arecord gets exactly what it sent.
s1() {
  plug --signal "$SIGNAL" || { result snd-usb-audio-arecord FAIL "could not plug the device"; return; }
  drv=$(ac_driver)
  # Wait for the card's capture PCM (arecord before it is registered: "Cannot get card index").
  if ! wait_for 10 card_of_device >/dev/null; then
    result snd-usb-audio-arecord FAIL "rig: driver $drv but no ALSA capture PCM in /proc/asound after 10 s: $(cat /proc/asound/cards 2>/dev/null | tr '\n' ' ') $(dmesg | tail -5 | tr '\n' ' ')"
    unplug; return
  fi
  card=$(card_of_device)
  if arecord -D "hw:$card,0" -f S16_LE -c 2 -r 48000 -d 2 /tmp/arecord.wav 2>/tmp/arecord.log; then
    out=$(isoscope verify-wav --signal "$SIGNAL" /tmp/arecord.wav 2>&1)
    gaps=$(echo "$out" | sed -n 's/.*"gaps":\([0-9]*\).*/\1/p' | head -1)
    # The status endpoint: opening the card at 96 kHz makes snd-usb-audio set the clock
    # (the device runs at 48 kHz), the device reports the change on its interrupt endpoint
    # (sample frequency, then clock validity), and snd-usb-audio turns the validity message
    # into an ALSA control event on "Clock Source 16 Validity".
    alsactl monitor "hw:$card" > /tmp/ctl.log 2>&1 &
    mon=$!
    sleep 0.5
    arecord -D "hw:$card,0" -f S16_LE -c 2 -r 96000 -d 1 /dev/null 2>/tmp/arecord96.log
    events=0
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      events=$(grep -c 'Validity' /tmp/ctl.log)
      [ "$events" -gt 0 ] && break
      sleep 0.2
    done
    kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
    if ! echo "$out" | grep -q '"mismatched":0,' || ! losses_ok "$gaps"; then
      result snd-usb-audio-arecord FAIL "verify-wav: $out"
    elif [ "$events" -gt 0 ]; then
      result snd-usb-audio-arecord PASS "driver $drv, card $card: $(echo "$out" | head -1); status endpoint: $events clock validity event(s) after the 48 -> 96 kHz change"
    else
      result snd-usb-audio-arecord FAIL "status endpoint: no ALSA control event for the clock after a 96 kHz open (arecord: $(tail -1 /tmp/arecord96.log | tr '\n' ' ')); alsactl monitor printed: $(head -5 /tmp/ctl.log | tr '\n' ' '); $(dmesg | tail -4 | tr '\n' ' ')"
    fi
  else
    result snd-usb-audio-arecord FAIL "driver $drv: arecord failed: $(tail -2 /tmp/arecord.log | tr '\n' ' ') $(dmesg | tail -5 | tr '\n' ' ')"
  fi
  unplug
}

# 2/3. isoscope captures bit-exactly with short packets, on the mmap path or the copy path,
# taking the interface from snd-usb-audio and giving it back.
capture_mode() { # capture_mode NAME MODE
  plug --signal "$SIGNAL" --short-ratio 0.3 --seed 7 || { result "$1" FAIL "could not plug the device"; return; }
  before=$(ac_driver)
  isoscope capture --device 1209:0001 --mode "$2" --seconds 3 --quiet --verify-signal "$SIGNAL" \
    --sim-short-ratio 0.3 --sim-seed 7 --wav /tmp/c.wav --stats-json /tmp/c.json 2>/tmp/c.log
  rc=$?
  wait_driver
  after=$(ac_driver)
  mode=$(json /tmp/c.json mode_used); zc=$(json /tmp/c.json urbs_zerocopy); cp=$(json /tmp/c.json urbs_copy)
  urbs=$(json /tmp/c.json urbs); ok=$(json /tmp/c.json frames_verified); bad=$(json /tmp/c.json frames_mismatched)
  short=$(json /tmp/c.json short_packets); cpu=$(json /tmp/c.json cpu_ns); bytes=$(json /tmp/c.json bytes)
  drops=$(json /tmp/c.json ring_drops); lost=$(json /tmp/c.json packets_lost_in_transit)
  caps=$(isoscope list 2>/dev/null | grep -m1 "usbfs capabilities" | sed 's/.*: //')
  hcline=$(isoscope list 2>/dev/null | grep -m1 "host controller" | sed 's/.*: //')
  want_hc=$(case $HC in vhci) echo vhci_hcd ;; xhci) echo xhci_hcd ;; *) echo ehci-pci ;; esac)
  figures="mode $mode, urbs $urbs (zero-copy $zc, copy $cp), frames verified $ok mismatched $bad, packets lost in transit $lost, ring drops $drops, short packets $short, cpu_ns $cpu for $bytes bytes, caps [$caps], host controller [$hcline], driver before $before after $after"
  want_path=$([ "$2" = zerocopy ] && echo "$zc" || echo "$cp")
  if [ "$rc" = 0 ] && [ "$mode" = "$2" ] && [ "$want_path" = "$urbs" ] && [ "${urbs:-0}" -gt 0 ] && [ "$bad" = 0 ] && losses_ok "$lost" \
     && [ "${ok:-0}" -gt 0 ] && [ "${short:-0}" -gt 0 ] && [ "$before" = snd-usb-audio ] && [ "$after" = snd-usb-audio ] \
     && { [ "$2" = copy ] || echo "$caps" | grep -q MMAP; } && echo "$hcline" | grep -q "^$want_hc "; then
    result "$1" PASS "$figures"
  else
    # What the recording holds where it breaks (a repeat, a loss, stale bytes), for the log.
    result "$1" FAIL "exit $rc: $figures; wav: $(isoscope verify-wav --signal "$SIGNAL" /tmp/c.wav 2>/dev/null); $(tail -3 /tmp/c.log | tr '\n' ' ')"
  fi
  unplug
}

# 4. usbfs_memory_mb lowered to 1: zero-copy is refused before streaming with the numbers
# and the fix; auto falls back to copy mode, says so, and captures.
s4() {
  plug --signal "$SIGNAL" --channels 8 || { result usbfs-cap FAIL "could not plug the device"; return; }
  old=$(cat /sys/module/usbcore/parameters/usbfs_memory_mb)
  echo 1 > /sys/module/usbcore/parameters/usbfs_memory_mb
  # S24_3 8 ch at 96 kHz, high speed: 312-byte packets, 39936-byte URBs; 24 URBs x 128
  # packets: the zero-copy pool (25 slots mapped, 1.06 MB counted) is over 1 MiB, copy
  # mode's 24 bounce buffers (1.02 MB counted) are not. 3072 packets queued (384 ms) also
  # fit EHCI's 1024-frame periodic schedule (83 x 128 did not: EFBIG).
  opts="--device 1209:0001 --format s24 --rate 96000 --packets 128 --urbs 24 --seconds 2 --quiet"
  # shellcheck disable=SC2086 # $opts is a list of words on purpose
  isoscope capture $opts --mode zerocopy 2>/tmp/z.log; zrc=$?
  # shellcheck disable=SC2086
  isoscope capture $opts --mode auto --stats-json /tmp/a.json 2>/tmp/a.log; arc=$?
  echo "$old" > /sys/module/usbcore/parameters/usbfs_memory_mb
  zmsg=$(grep "error" /tmp/z.log | head -1)
  # The remedy is its own line, once, in the command line's words.
  zfix=$(grep "^isoscope: fix:" /tmp/z.log)
  if [ "$zrc" != 0 ] && echo "$zmsg" | grep -q "usbfs_memory_mb is 1 MiB" && echo "$zfix" | grep -q "usbcore.usbfs_memory_mb=" \
     && echo "$zfix" | grep -q -- "--urbs" && [ "$(echo "$zfix" | wc -l)" = 1 ] \
     && [ "$arc" = 0 ] && grep -q "capturing in copy mode" /tmp/a.log && [ "$(json /tmp/a.json mode_used)" = copy ] \
     && [ "$(json /tmp/a.json frames)" -gt 0 ]; then
    result usbfs-cap PASS "zerocopy refused ($(echo "$zmsg" | cut -c1-160)...); auto captured $(json /tmp/a.json frames) frames in copy mode"
  else
    result usbfs-cap FAIL "zerocopy exit $zrc: $zmsg | $zfix | auto exit $arc: $(tail -2 /tmp/a.log | tr '\n' ' ')"
  fi
  unplug
}

# 5. Unplug mid-capture: a clean "device disconnected", stats and WAV kept, no hang.
s5() {
  plug --signal "$SIGNAL" || { result unplug FAIL "could not plug the device"; return; }
  isoscope capture --device 1209:0001 --seconds 60 --quiet --verify-signal "$SIGNAL" --wav /tmp/u.wav --stats-json /tmp/u.json 2>/tmp/u.log &
  cap=$!
  sleep 3
  isoscope detach --port "$PORT"; PORT=""
  t=0; while kill -0 $cap 2>/dev/null && [ $t -lt 100 ]; do sleep 0.1; t=$((t + 1)); done
  if kill -0 $cap 2>/dev/null; then kill -9 $cap; result unplug FAIL "capture hung after the unplug"; unplug; return; fi
  wait $cap; rc=$?
  frames=$(json /tmp/u.json frames); bad=$(json /tmp/u.json frames_mismatched)
  wavcheck=$(isoscope verify-wav --signal "$SIGNAL" /tmp/u.wav 2>/dev/null)
  if [ "$rc" = 1 ] && grep -q "device disconnected" /tmp/u.log && [ "${frames:-0}" -gt 0 ] && [ "$bad" = 0 ] \
     && echo "$wavcheck" | grep -q "\"verified\":$frames,"; then
    result unplug PASS "ended $((t / 10)).$((t % 10)) s after the unplug with '$(grep -o 'device disconnected' /tmp/u.log | head -1)', $frames frames kept, WAV verified"
  else
    result unplug FAIL "exit $rc, frames $frames, mismatched $bad, wav $wavcheck: $(tail -2 /tmp/u.log | tr '\n' ' ')"
  fi
  unplug
}

# 5 on a usbredir controller: the server sends device_disconnect after 3 s of streaming
# (mid-capture) and device_connect 2 s later. The capture ends with "device disconnected",
# keeps what it had, and the device, plugged in again, captures bit-exactly.
s5_redir() {
  plug --signal "$SIGNAL" --disconnect-after 3 --reconnect-after 2 || { result unplug FAIL "could not plug the device"; return; }
  isoscope capture --device 1209:0001 --seconds 60 --quiet --verify-signal "$SIGNAL" --wav /tmp/u.wav --stats-json /tmp/u.json 2>/tmp/u.log &
  cap=$!
  t=0; while kill -0 $cap 2>/dev/null && [ $t -lt 150 ]; do sleep 0.1; t=$((t + 1)); done
  if kill -0 $cap 2>/dev/null; then kill -9 $cap; result unplug FAIL "capture still running 15 s after start (no disconnect?)"; unplug; return; fi
  wait $cap; rc=$?
  frames=$(json /tmp/u.json frames); bad=$(json /tmp/u.json frames_mismatched); lost=$(json /tmp/u.json packets_lost_in_transit)
  wavcheck=$(isoscope verify-wav --signal "$SIGNAL" /tmp/u.wav 2>/dev/null)
  wav_ok=no
  echo "$wavcheck" | grep -q "\"verified\":$frames," && wav_ok=yes
  # With packets lost in transit (xHCI), the WAV holds every frame that arrived, around gaps.
  [ "${lost:-0}" != 0 ] && echo "$wavcheck" | grep -q '"mismatched":0,' && wav_ok=yes
  # The replug: the device is back within 10 s and a second capture verifies.
  back=no
  wait_for 10 device_dir >/dev/null && wait_driver && back=yes
  isoscope capture --device 1209:0001 --seconds 1 --quiet --verify-signal "$SIGNAL" --stats-json /tmp/u2.json 2>/tmp/u2.log; rc2=$?
  ok2=$(json /tmp/u2.json frames_verified); bad2=$(json /tmp/u2.json frames_mismatched); lost2=$(json /tmp/u2.json packets_lost_in_transit)
  if [ "$rc" = 1 ] && grep -q "device disconnected" /tmp/u.log && [ "${frames:-0}" -gt 0 ] && [ "$bad" = 0 ] \
     && losses_ok "$lost" && losses_ok "$lost2" \
     && [ $wav_ok = yes ] && [ "$back" = yes ] && [ "$rc2" = 0 ] && [ "${ok2:-0}" -gt 0 ] && [ "$bad2" = 0 ]; then
    result unplug PASS "server-side disconnect after 3 s: capture ended with '$(grep -o 'device disconnected' /tmp/u.log | head -1)', $frames frames kept (packets lost in transit $lost), WAV verified ($wavcheck); replugged: $ok2 frames verified (lost $lost2)"
  else
    result unplug FAIL "exit $rc, frames $frames, mismatched $bad, lost $lost, wav $wavcheck, back $back, second capture exit $rc2 verified $ok2 mismatched $bad2: $(tail -2 /tmp/u.log | tr '\n' ' ') | $(tail -2 /tmp/u2.log | tr '\n' ' ')"
  fi
  unplug
}

# swiotlb (EHCI, guest memory above 4 GiB): the controller's DMA mask is 32 bits, so copy
# mode's kernel buffers (kmalloc, above 4 GiB) are bounced through swiotlb on every URB,
# while the zero-copy pool was allocated inside the mask at mmap() and needs no bounce.
# Shows the bounce slabs in use during each mode's capture, and the A/B CPU figures.
swiotlb_sampler() { # writes the most swiotlb slabs in use seen so far to /tmp/peak, until killed
  peak=0
  echo 0 > /tmp/peak
  while :; do
    u=$(cat /sys/kernel/debug/swiotlb/io_tlb_used 2>/dev/null || echo 0)
    if [ "$u" -gt "$peak" ]; then peak=$u; echo "$peak" > /tmp/peak; fi
    sleep 0.05
  done
}
s_swiotlb() {
  mount -t debugfs none /sys/kernel/debug 2>/dev/null
  plug --signal "$SIGNAL" --channels 8 || { result swiotlb FAIL "could not plug the device"; return; }
  notes=""; ok=1
  for mode in copy zerocopy; do
    swiotlb_sampler &
    sampler=$!
    isoscope capture --device 1209:0001 --mode $mode --format s24 --rate 96000 --seconds 3 --quiet \
      --verify-signal "$SIGNAL" --stats-json /tmp/w.json 2>/tmp/w.log
    rc=$?
    kill $sampler; wait $sampler 2>/dev/null
    peak=$(cat /tmp/peak)
    v=$(json /tmp/w.json frames_verified); bad=$(json /tmp/w.json frames_mismatched); lost=$(json /tmp/w.json packets_lost_in_transit)
    notes="$notes $mode: swiotlb slabs in use peak $peak, verified $v, mismatched $bad, lost $lost, exit $rc;"
    losses_ok "$lost" || ok=0
    eval "peak_$mode=$peak"
    [ "$rc" = 0 ] && [ "$bad" = 0 ] && [ "${v:-0}" -gt 0 ] || ok=0
  done
  # Copy mode bounces every URB buffer: its peak is about the 8 URBs of the default plan
  # times the slabs of one buffer. Zero-copy's iso data never bounces; what it may show is
  # a slab or two of small kmalloc'd buffers (control transfers, snd-usb-audio's status
  # URB), fewer than one URB buffer would take.
  # shellcheck disable=SC2154 # peak_copy / peak_zerocopy are set by the eval above
  if [ "$peak_copy" -gt 0 ] && [ $((peak_zerocopy * 8)) -lt "$peak_copy" ]; then
    notes="$notes zero-copy's iso data bounced through no swiotlb slab (its peak is under one URB buffer's $((peak_copy / 8)));"
  else
    ok=0; notes="$notes zero-copy's peak is not under one URB buffer of copy mode's (peak/8 = $((peak_copy / 8)));"
  fi
  if isoscope bench --device 1209:0001 --format s24 --rate 96000 --seconds 3 --rounds 3 --json /tmp/wb.json 2>/tmp/wb.log; then
    notes="$notes CPU us/MiB median: zero-copy $(r0 "$(json /tmp/wb.json zerocopy_cpu_us_per_mib_median)"), copy $(r0 "$(json /tmp/wb.json copy_cpu_us_per_mib_median)") (copy/zero-copy $(r2 "$(json /tmp/wb.json copy_over_zerocopy_cpu)")); whole guest: zero-copy $(r0 "$(json /tmp/wb.json zerocopy_system_cpu_us_per_mib_median)"), copy $(r0 "$(json /tmp/wb.json copy_system_cpu_us_per_mib_median)")"
    sed -n 's/^isoscope: //p' /tmp/wb.log
  else
    ok=0; notes="$notes bench failed: $(tail -2 /tmp/wb.log | tr '\n' ' ')"
  fi
  if [ $ok = 1 ]; then result swiotlb PASS "$notes"; else result swiotlb FAIL "$notes"; fi
  unplug
}

# packet-errors: the device fails 5 % of its packets (USB/IP: the errno itself; usbredir:
# an error status, which QEMU turns into -EPROTO, or a packet longer than the endpoint's,
# which the controller reports as babble, -EOVERFLOW). isoscope counts them by errno, says
# what each means, and the frames around them verify.
s_packet_errors() {
  plug --signal "$SIGNAL" --error-ratio 0.05 --seed 11 || { result packet-errors FAIL "could not plug the device"; return; }
  isoscope capture --device 1209:0001 --seconds 3 --quiet --verify-signal "$SIGNAL" --sim-error-ratio 0.05 --sim-seed 11 \
    --stats-json /tmp/e.json 2>/tmp/e.log; rc=$?
  ok=$(json /tmp/e.json frames_verified); bad=$(json /tmp/e.json frames_mismatched); lost=$(json /tmp/e.json packets_lost_in_transit)
  failed=$(json /tmp/e.json packet_errors)
  by=$(grep "packets failed with" /tmp/e.log | sed 's/^isoscope: *//; s/: .*//' | paste -sd, -)
  want=$(case $HC in vhci) echo EPROTO ;; *) echo EOVERFLOW ;; esac)
  if [ "$rc" = 0 ] && [ "$bad" = 0 ] && [ "${ok:-0}" -gt 0 ] && [ "${failed:-0}" -gt 0 ] && losses_ok "$lost" \
     && echo "$by" | grep -q "$want" && grep -q "packets failed with -E[A-Z]*: [a-z]" /tmp/e.log; then
    result packet-errors PASS "$failed packets failed ($by), frames verified $ok, mismatched $bad, lost in transit $lost"
  else
    result packet-errors FAIL "exit $rc, failed $failed ($by), verified $ok, mismatched $bad, lost $lost: $(tail -3 /tmp/e.log | tr '\n' ' ')"
  fi
  unplug
}

# 6. SIGTERM and SIGINT mid-capture: WAV intact, snd-usb-audio bound again.
s6() {
  plug --signal "$SIGNAL" || { result signals FAIL "could not plug the device"; return; }
  notes=""; ok=1
  for sig in TERM INT; do
    isoscope capture --device 1209:0001 --quiet --verify-signal "$SIGNAL" --wav /tmp/s.wav --stats-json /tmp/s.json 2>/tmp/s.log &
    cap=$!
    sleep 3
    kill -$sig $cap
    wait $cap; rc=$?
    wait_driver
    frames=$(json /tmp/s.json frames)
    wavcheck=$(isoscope verify-wav --signal "$SIGNAL" /tmp/s.wav 2>/dev/null)
    drv=$(ac_driver)
    notes="$notes SIG$sig: exit $rc, $frames frames, driver $drv;"
    lost=$(json /tmp/s.json packets_lost_in_transit)
    notes="$notes lost $lost;"
    wav_ok=0
    echo "$wavcheck" | grep -q "\"verified\":$frames," && wav_ok=1
    [ "${lost:-0}" != 0 ] && losses_ok "$lost" && echo "$wavcheck" | grep -q '"mismatched":0,' && wav_ok=1
    if [ "$rc" != 0 ] || [ "${frames:-0}" -le 0 ] || [ "$drv" != snd-usb-audio ] || [ $wav_ok = 0 ]; then ok=0; fi
  done
  if [ $ok = 1 ]; then
    result signals PASS "$notes"
  else
    result signals FAIL "$notes $(tail -2 /tmp/s.log | tr '\n' ' ')"
  fi
  unplug
}

# 7. Not root: a permission error that names the udev rule and how to install it.
s7() {
  plug --signal "$SIGNAL" || { result not-root FAIL "could not plug the device"; return; }
  su -s /bin/sh nobody -c "isoscope capture --device 1209:0001 --seconds 1 --quiet" 2>/tmp/p.log; rc=$?
  # The error says what happened; the fix comes once, on its own line.
  msg=$(grep -E "^isoscope: (error|fix):" /tmp/p.log | tr '\n' ' ')
  if [ "$rc" != 0 ] && echo "$msg" | grep -q "permission denied" && echo "$msg" | grep -q "60-isoscope.rules" \
     && echo "$msg" | grep -q "udevadm" && [ "$(grep -c '^isoscope: fix:' /tmp/p.log)" = 1 ]; then
    result not-root PASS "$(echo "$msg" | cut -c1-200)"
  else
    result not-root FAIL "exit $rc: $(tr '\n' ' ' < /tmp/p.log)"
  fi
  unplug
}

# 9. The stock USB/IP tools: `usbip list` sees the virtual device and `usbip attach`
# plugs it in; isoscope then captures from it.
s9() {
  isoscope virtual-device --listen 127.0.0.1:3240 --signal "$SIGNAL" > /tmp/vd.log 2>&1 &
  VD_PID=$!
  wait_for 10 sh -c 'grep -q "serving" /tmp/vd.log'
  listed=$(usbip list -r 127.0.0.1 2>&1 | grep -c "1-1:")
  if ! usbip attach -r 127.0.0.1 -b 1-1 > /tmp/ua.log 2>&1; then
    result usbip-attach FAIL "usbip attach: $(tr '\n' ' ' < /tmp/ua.log)"; kill "$VD_PID"; wait "$VD_PID" 2>/dev/null; VD_PID=""; return
  fi
  wait_for 20 device_dir >/dev/null && wait_driver
  drv=$(ac_driver)
  isoscope capture --device 1209:0001 --seconds 1 --quiet --verify-signal "$SIGNAL" --stats-json /tmp/ui.json 2>/tmp/ui.log
  rc=$?
  ok=$(json /tmp/ui.json frames_verified); bad=$(json /tmp/ui.json frames_mismatched)
  usbip detach -p 0 > /dev/null 2>&1
  kill "$VD_PID" 2>/dev/null; wait "$VD_PID" 2>/dev/null; VD_PID=""
  if [ "$listed" -ge 1 ] && [ "$drv" = snd-usb-audio ] && [ "$rc" = 0 ] && [ "${ok:-0}" -gt 0 ] && [ "$bad" = 0 ]; then
    result usbip-attach PASS "usbip list showed bus id 1-1; usbip attach bound $drv; isoscope verified $ok frames"
  else
    result usbip-attach FAIL "listed $listed, driver $drv, capture exit $rc, verified $ok, mismatched $bad: $(tail -2 /tmp/ui.log | tr '\n' ' ')"
  fi
  sleep 0.5
}

# 8. Zero-copy against copy on the real kernel, alternating runs; arecord on the same device.
s8() {
  # 8 channels of S24_3 at 96 kHz: 2.3 MB/s, so the per-byte costs show above the per-wake-up ones.
  plug --signal "$SIGNAL" --channels 8 || { result bench FAIL "could not plug the device"; return; }
  if isoscope bench --device 1209:0001 --format s24 --rate 96000 --seconds 4 --rounds 3 --json /tmp/b.json 2>/tmp/b.log; then
    zc=$(json /tmp/b.json zerocopy_cpu_us_per_mib_median); cp=$(json /tmp/b.json copy_cpu_us_per_mib_median)
    ratio=$(json /tmp/b.json copy_over_zerocopy_cpu)
    zs=$(json /tmp/b.json zerocopy_syscalls_per_s_median); cs=$(json /tmp/b.json copy_syscalls_per_s_median)
    zs_m=$(json /tmp/b.json zerocopy_system_cpu_us_per_mib_median); cs_m=$(json /tmp/b.json copy_system_cpu_us_per_mib_median)
    # arecord through snd-usb-audio on the same device and stream, for 4 s: its own process
    # (user+sys ticks) and the whole guest's busy time (/proc/stat), per MiB.
    wait_for 10 card_of_device >/dev/null
    card=$(card_of_device)
    b0=$(busy_ticks)
    arecord -D "hw:${card:-0},0" -f S24_3LE -c 8 -r 96000 -d 4 /tmp/bench.wav 2>/dev/null &
    ap=$!
    sleep 3.9
    ticks=$(awk '{print $14 + $15}' /proc/$ap/stat 2>/dev/null)
    wait $ap
    b1=$(busy_ticks)
    hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
    mib=$(awk "BEGIN { print 96000 * 24 * 4 / 1048576 }")
    ar=$(awk "BEGIN { printf \"%.0f\", ($ticks + 0) / $hz * 1e6 / $mib }")
    ar_m=$(awk "BEGIN { printf \"%.0f\", ($b1 - $b0) / $hz * 1e6 / $mib }")
    # The highest rate the virtual device offers (8 ch x 96 kHz x 24 bit), verified: no gaps.
    isoscope capture --device 1209:0001 --format s24 --rate 96000 --seconds 3 --quiet --verify-signal "$SIGNAL" \
      --stats-json /tmp/hr.json 2>/tmp/hr.log; hrc=$?
    hv=$(json /tmp/hr.json frames_verified); hb=$(json /tmp/hr.json frames_mismatched)
    hl=$(json /tmp/hr.json packets_lost_in_transit)
    [ "$hrc" = 0 ] && [ "$hb" = 0 ] && [ "${hv:-0}" -gt 0 ] && losses_ok "$hl" || { result bench FAIL "2.3 MB/s capture: exit $hrc, verified $hv mismatched $hb lost in transit ${hl:-?}: $(tail -2 /tmp/hr.log | tr '\n' ' ')"; unplug; return; }
    sed -n 's/^isoscope: //p' /tmp/b.log
    # The same A/B at 48 kHz stereo S16 (192 kB/s), the stream most USB microphones send.
    unplug
    plug --signal "$SIGNAL" || { result bench FAIL "could not plug the 2-channel device"; return; }
    if ! isoscope bench --device 1209:0001 --format s16 --rate 48000 --seconds 4 --rounds 3 --json /tmp/b2.json 2>/tmp/b2.log; then
      result bench FAIL "48 kHz stereo bench: $(tail -3 /tmp/b2.log | tr '\n' ' ')"; unplug; return
    fi
    sed -n 's/^isoscope: //p' /tmp/b2.log
    z2=$(json /tmp/b2.json zerocopy_cpu_us_per_mib_median); c2=$(json /tmp/b2.json copy_cpu_us_per_mib_median)
    r2=$(json /tmp/b2.json copy_over_zerocopy_cpu)
    zm2=$(json /tmp/b2.json zerocopy_system_cpu_us_per_mib_median); cm2=$(json /tmp/b2.json copy_system_cpu_us_per_mib_median)
    result bench PASS "48 kHz stereo: CPU us/MiB median zero-copy $(r0 "$z2"), copy $(r0 "$c2") (copy/zero-copy $(r2 "$r2")), whole guest zero-copy $(r0 "$zm2"), copy $(r0 "$cm2"); 8 ch 96 kHz 24 bit: CPU us/MiB median zero-copy $(r0 "$zc"), copy $(r0 "$cp") (copy/zero-copy $(r2 "$ratio")); whole guest us/MiB: isoscope zero-copy $(r0 "$zs_m"), copy $(r0 "$cs_m"), arecord via snd-usb-audio $ar_m; syscalls/s: zero-copy $(r0 "$zs"), copy $(r0 "$cs"); arecord process ~$ar us/MiB (tick resolution); 2.3 MB/s verified $hv frames, mismatched $hb, packets lost in transit $hl"
  else
    result bench FAIL "$(tail -3 /tmp/b.log | tr '\n' ' ')"
  fi
  unplug
}

# monitor: the live monitor on the real kernel path. isoscope takes the device from
# snd-usb-audio, captures zero-copy and plays through cpal and alsa-lib into a `file` PCM
# (slave null) paced by the host clock; the recording made alongside verifies bit-exactly,
# the PCM file holds the sound, and the driver gets the device back.
busy_ticks() { # busy ticks of all CPUs (user nice system irq softirq steal) from /proc/stat
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

jnum() { # jnum FILE KEY -> the first number field KEY at any depth
  sed -n "s/^ *\"$2\": \([-0-9.]*\),\{0,1\}$/\1/p" "$1" | head -1
}
s10() {
  plug --signal "$SIGNAL" || { result monitor FAIL "could not plug the device"; return; }
  printf 'pcm.iso_vm {\n  type file\n  slave.pcm "null"\n  file "/tmp/monitor.raw"\n  format "raw"\n}\n' > /tmp/asoundrc
  rm -f /tmp/monitor.raw
  ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:/tmp/asoundrc isoscope monitor --device 1209:0001 \
    --output iso_vm --pace-host-clock --seconds 4 --quiet --stats-json /tmp/m.json --wav /tmp/m.wav 2>/tmp/m.log
  rc=$?
  wait_driver
  after=$(ac_driver)
  med=$(jnum /tmp/m.json latency_ms_median); p99=$(jnum /tmp/m.json latency_ms_p99)
  played=$(jnum /tmp/m.json frames_played); under=$(jnum /tmp/m.json underruns)
  raw=$(wc -c < /tmp/monitor.raw 2>/dev/null || echo 0)
  v=$(isoscope verify-wav --signal "$SIGNAL" /tmp/m.wav 2>&1 | head -1)
  figures="latency median $med ms, p99 $p99 ms, $played frames played, $under underruns, PCM file $raw bytes, wav $v, driver after $after"
  if [ "$rc" = 0 ] && [ "${played:-0}" -gt 96000 ] && [ "$raw" -gt 0 ] && [ -n "$med" ] \
     && echo "$v" | grep -q '"mismatched":0' && [ "$after" = snd-usb-audio ]; then
    result monitor PASS "$figures"
  else
    result monitor FAIL "exit $rc: $figures; $(tail -3 /tmp/m.log | tr '\n' ' ')"
  fi
  unplug
}

# The host names the scenarios to run on the kernel command line.
only=$(sed -n 's/.*isoscope\.scenarios=\([^ ]*\).*/\1/p' /proc/cmdline)
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# One line per scenario, in the order of `expected` in tests/vm/run.
want kernel && s_kernel
want isoscope-runs && s_isoscope_runs
# Device scenarios: each plugs a fresh `isoscope virtual-device` in (see plug): through
# vhci-hcd on vhci, through the host's usbredir server on xhci/ehci.
want snd-usb-audio-arecord && s1
want capture-zerocopy && capture_mode capture-zerocopy zerocopy
want capture-copy && capture_mode capture-copy copy
want usbfs-cap && s4
if [ "$HC" = vhci ]; then want unplug && s5; else want unplug && s5_redir; fi
want signals && s6
want not-root && s7
want usbip-attach && s9
want bench && s8
want monitor && s10
want swiotlb && s_swiotlb
want packet-errors && s_packet_errors
