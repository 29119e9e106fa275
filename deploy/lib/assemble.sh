# shellcheck shell=bash
# Stage 2 of deploy/build-image (sourced; uses its variables): from the cached base
# tarball to the compressed image, in minutes. Nothing here uses a loop device.

work=
mounted=()

cleanup_chroot() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  mounted=()
}

# Deterministic UUIDs and volume ids from the version and suite: two builds of one commit
# produce the same filesystems, and the ids still differ between releases.
derive_uuid() {
  local h
  h=$(printf '%s' "$name:$1" | sha256sum)
  printf '%s-%s-4%s-8%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" "${h:17:3}" "${h:20:12}"
}

in_chroot() {
  # env -i: nothing from the build host's environment leaks into the image, except the
  # host's CA bundle (copied to /tmp), for hosts whose HTTPS goes through a TLS proxy.
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" PIP_CERT=/tmp/build-ca.pem \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore \
    DEBIAN_FRONTEND=noninteractive "$@"
}

chroot_pip() {
  # Debian's pip wheel (python3-pip-whl, what ensurepip would install) run as a zip
  # by the venv's interpreter, so it acts on the venv.
  local pipwhl
  pipwhl=$(cd "$root" && ls usr/share/python-wheels/pip-*.whl | tail -1)
  in_chroot /opt/intercom/venv/bin/python "/$pipwhl/pip" "$@"
}

build_wheel() {
  # pip wheel --no-deps: the same wheel `pip install .` would build, made on the host
  # (pure Python), installed in the image by the image's own pip under emulation.
  rm -rf "$work/wheels" && mkdir -p "$work/wheels"
  python3 -m pip wheel -q --no-deps --no-cache-dir -w "$work/wheels" "$repo" >&2
  wheel=$(ls "$work"/wheels/*.whl)
  [ "$(echo "$wheel" | wc -l)" = 1 ] || die "expected one wheel, got: $wheel"
}

install_firmware() {
  local pipcache=$cache/pip build_pkgs
  mkdir -p "$pipcache" "$root/root/.cache/pip" "$root/tmp/wheels"
  mount --bind "$pipcache" "$root/root/.cache/pip"; mounted+=("$root/root/.cache/pip")
  mount -t proc proc "$root/proc"; mounted+=("$root/proc")
  mount --bind /dev "$root/dev"; mounted+=("$root/dev")
  cp "$wheel" "$root/tmp/wheels/"
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/tmp/build-ca.pem"
  rm -f "$root/etc/resolv.conf" && cp -L /etc/resolv.conf "$root/etc/resolv.conf"

  log "installing the firmware into /opt/intercom/venv (emulated pip)"
  # No pip inside the venv: installing it (ensurepip) costs minutes under emulation and
  # a door intercom never runs pip. The image's own pip runs from Debian's wheel instead.
  in_chroot python3 -m venv --without-pip --system-site-packages /opt/intercom/venv
  # [rpi] pulls RPi.GPIO, compiled here for arm64 (pip keeps the built wheel in the
  # cache, so later builds skip the compiler). Debian's python3-alsaaudio and
  # python3-netifaces satisfy the other requirements through --system-site-packages.
  chroot_pip install -q "/tmp/wheels/$(basename "$wheel")[rpi]" >&2
  # RPi.GPIO refuses to import off a Pi (it reads the board revision): check its C part.
  in_chroot /opt/intercom/venv/bin/python -c 'import importlib.util as u, alsaaudio, netifaces
import firmware.cli
assert u.find_spec("RPi._GPIO").origin.startswith("/opt/intercom/venv/"), "RPi.GPIO not in venv"'
  chroot_pip check >&2

  mapfile -t build_pkgs < <(pkg_list "$here/base/build-packages.txt")
  log "purging build-stage packages: ${build_pkgs[*]}"
  in_chroot apt-get purge -y -qq --autoremove "${build_pkgs[@]}" >/dev/null
  in_chroot apt-get clean

  # The unit runs `intercom run --config ...`. Until the firmware's CLI has --config,
  # a drop-in starts it without (said loudly here so nobody ships that by accident).
  local run_help
  run_help=$(in_chroot /opt/intercom/venv/bin/intercom run --help)
  if ! grep -q -- '--config' <<<"$run_help"; then
    log "WARNING: this firmware's 'intercom run' has no --config; installing a drop-in without it"
    mkdir -p "$root/etc/systemd/system/intercom.service.d"
    cat >"$root/etc/systemd/system/intercom.service.d/no-config-option.conf" <<'EOF'
# Written by deploy/build-image: this firmware version has no `intercom run --config`.
[Service]
ExecStart=
ExecStart=/opt/intercom/venv/bin/intercom run
EOF
  fi
  cleanup_chroot
  rm -rf "$root/tmp/wheels" "$root/tmp/build-ca.pem" "$root/root/.cache"
  ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
  # Reproducibility: what this stage's apt/dpkg runs logged (with the wall-clock time of
  # the build) and ldconfig's aux cache (file times) are the only files two builds of one
  # commit differed in (deploy/compare-images); logs of the build are no use on a device.
  rm -f "$root/var/cache/ldconfig/aux-cache" "$root/var/log/alternatives.log" \
    "$root/var/log/dpkg.log" "$root/var/log/apt/history.log" "$root/var/log/apt/term.log"
}

configure_system() {
  # deploy/rootfs/ as root:root (the checkout's owner must not leak into the image).
  tar -C "$here/rootfs" --owner=0 --group=0 --numeric-owner -cf - . | tar -C "$root" -xf -
  mkdir -p "$root/etc/intercom" "$root/var/lib/intercom" "$root/boot/firmware"
  ln -sfn /var/lib/intercom/intercom.toml "$root/etc/intercom/intercom.toml"
  cp "$here/README.md" "$root/usr/share/intercom/README.md"
  # resolv.conf: systemd-resolved's stub, in /run (the root is read-only).
  ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
  # Host keys are per device (intercom-boot-setup makes them on first boot).
  rm -f "$root"/etc/ssh/ssh_host_*
  # Empty machine-id: systemd makes one per boot in the overlay. systemd-firstboot would
  # prompt on the console for a locale and a root password on such a "first boot": masked.
  : >"$root/etc/machine-id"
  ln -sfn /dev/null "$root/etc/systemd/system/systemd-firstboot.service"
  systemctl --root="$root" enable intercom.service intercom-boot-setup.service \
    systemd-networkd.service systemd-resolved.service ssh.service >/dev/null 2>&1
  systemctl --root="$root" disable systemd-networkd-wait-online.service >/dev/null 2>&1 || true
  # Wi-Fi runs as wpa_supplicant@wlan0, started by intercom-boot-setup when wifi.txt
  # exists. The package's D-Bus wpa_supplicant.service serves network managers this
  # image does not have: off, one process (and one boot-time unit) less.
  systemctl --root="$root" disable wpa_supplicant.service >/dev/null 2>&1 || true
  # raspi-firmware writes "rw"; the root is mounted read-only (overlayroot on top).
  sed -i 's/ rw / ro /' "$root/boot/firmware/cmdline.txt"
  grep -q ' ro ' "$root/boot/firmware/cmdline.txt" || die "cmdline.txt has no ' ro '"
  # What the user edits on the FAT partition: examples, never live files.
  cp "$here/boot-examples/"* "$root/boot/firmware/"
  cp "$root/usr/share/intercom/intercom.toml.default" "$root/boot/firmware/intercom.toml"
}

write_manifest() {
  local m=$root/usr/share/intercom/manifest.txt
  {
    echo "# $name"
    echo "# commit $commit$dirty, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, base $(basename "$base_tar")"
    echo "# Debian packages (dpkg-query):"
    dpkg-query --admindir="$root/var/lib/dpkg" -W -f='deb ${Package} ${Version} ${Architecture}\n' \
      | LC_ALL=C sort
    echo "# Python packages in /opt/intercom/venv (pip freeze --local):"
    mount -t proc proc "$root/proc"; mounted+=("$root/proc")
    chroot_pip freeze --local --all | LC_ALL=C sort | sed 's/^/pip /'
    cleanup_chroot
  } >"$m.tmp"
  mv "$m.tmp" "$m"
  cp "$m" "$out/$name.manifest.txt"
}

make_filesystems() {
  # Clamp every timestamp to SOURCE_DATE_EPOCH: mkfs.ext4 -d and mcopy -m copy them.
  find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"
  rm -rf "$work/bootfs" && mkdir -p "$work/bootfs"
  mv "$root"/boot/firmware/* "$work/bootfs/"
  local used_mib root_mib
  used_mib=$(du -s --block-size=1M --apparent-size "$root" | cut -f1)
  # ~15 % headroom for metadata plus 64 MiB spare; the root is read-only anyway.
  root_mib=$(( (used_mib * 115 / 100 + 64 + 3) / 4 * 4 ))
  log "root filesystem: ${used_mib} MiB of files in a ${root_mib} MiB partition"
  rm -f "$work"/*.fs
  E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L "$root_label" -m 0 \
    -U "$(derive_uuid root)" -E "hash_seed=$(derive_uuid root-hash),root_owner=0:0" \
    -d "$root" "$work/root.fs" "${root_mib}M"
  mkdir -p "$work/datafs"
  E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L "$data_label" -m 0 \
    -U "$(derive_uuid data)" -E "hash_seed=$(derive_uuid data-hash),root_owner=0:0" \
    -d "$work/datafs" "$work/data.fs" "${data_mib}M"
  mkfs.vfat -F 32 -n "$boot_label" -i "$(derive_uuid boot | cut -c1-8)" --invariant \
    -C "$work/boot.fs" $((boot_mib * 1024)) >/dev/null
  MTOOLS_SKIP_CHECK=1 mcopy -i "$work/boot.fs" -s -p -m "$work"/bootfs/* ::/
  root_size_mib=$root_mib
}

make_disk() {
  local img=$work/$name.img s=2048 # sectors per MiB
  local boot_start=4 root_start=$((4 + boot_mib))
  local data_start=$((root_start + root_size_mib)) total=$((root_start + root_size_mib + data_mib))
  rm -f "$img" && truncate -s "${total}M" "$img"
  # MBR: the Pi boot ROM/firmware reads only MBR partition tables. Type c = FAT32 LBA.
  sfdisk -q "$img" <<EOF
label: dos
label-id: 0x$(derive_uuid disk | cut -c1-8)
unit: sectors

start=$((boot_start * s)), size=$((boot_mib * s)), type=c, bootable
start=$((root_start * s)), size=$((root_size_mib * s)), type=83
start=$((data_start * s)), size=$((data_mib * s)), type=83
EOF
  dd if="$work/boot.fs" of="$img" bs=1M seek=$boot_start conv=notrunc,sparse status=none
  dd if="$work/root.fs" of="$img" bs=1M seek=$root_start conv=notrunc,sparse status=none
  dd if="$work/data.fs" of="$img" bs=1M seek=$data_start conv=notrunc,sparse status=none
  rm -f "$work"/*.fs
  log "compressing $(du -h --apparent-size "$img" | cut -f1) image (xz)"
  rm -f "$out/$name.img.xz"
  xz -T0 "-${XZ_LEVEL:-6}" -c "$img" >"$out/$name.img.xz.tmp"
  mv "$out/$name.img.xz.tmp" "$out/$name.img.xz"
  rm -f "$img"
  (cd "$out" && sha256sum "$name.img.xz" >"$name.img.xz.sha256")
}

assemble_image() {
  local t0=$SECONDS
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  work=$cache/work-$name
  root=$work/root
  trap cleanup_chroot EXIT
  rm -rf "$work" && mkdir -p "$root"
  log "unpacking base $(basename "$base_tar")"
  tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$base_tar"
  build_wheel
  configure_system
  install_firmware
  write_manifest
  make_filesystems
  make_disk
  rm -rf "$work"
  log "done in $((SECONDS - t0)) s: $out/$name.img.xz ($(du -h "$out/$name.img.xz" | cut -f1))"
}
