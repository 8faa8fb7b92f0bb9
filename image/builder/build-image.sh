#!/bin/bash
# Build the x86-64 appliance disk image (Debian 12) with mmdebstrap and a partitioning step.
#
#   image/builder/build-image.sh [OUT_DIR]        (as root; default OUT_DIR .cache/image/out)
#
# Why mmdebstrap and not mkosi: mmdebstrap builds the root from Debian's archive with chroot only
# (no systemd-nspawn, which needs systemd as PID 1 and a tmpfs over /run/systemd/nspawn here), its
# output is a plain folder we can cache, and the file systems are then made straight from folders
# with `mkfs.ext4 -d` (no loop device, no mount, no vfat on the build host).
#
# The disk (GPT, raw):  1 RADIANT-ROOT  ext4, mounted read-only (Debian, systemd, python3, fonts)
#                       2 RADIANT-APP   ext4 at /opt/radiant: app slots <version>/venv, `current`
#                       3 RADIANT-DATA  ext4 at /var/lib/radiant (empty; first boot fills it),
#                         RADIANT_IMAGE_DATA_MIB (default 8192) as built, grown to the end of the
#                         disk at boot (radiant-grow-data.service)
# The kernel and initrd are written next to the disk and booted directly (QEMU -kernel/-initrd;
# on hardware a boot loader passes the same command line, see image/README.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$repo/.cache/image"
out=${1:-$cache/out}
python=${PYTHON:-$repo/.venv/bin/python}
app_mib=${RADIANT_IMAGE_APP_MIB:-2048}
data_mib=${RADIANT_IMAGE_DATA_MIB:-8192}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# The appliance refuses studies below RADIANT_MIN_FREE_GB (5 GB) free: a smaller data partition
# would refuse everything until it is grown on a larger disk.
min_data_mib=6144
for size in "$app_mib" "$data_mib"; do
    case $size in ''|*[!0-9]*) echo "build-image: partition sizes are MiB, whole numbers (got '$size')" >&2; exit 2;; esac
done
[ "$data_mib" -ge "$min_data_mib" ] || { echo "build-image: RADIANT_IMAGE_DATA_MIB=$data_mib is below $min_data_mib MiB (the appliance keeps 5 GB free)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "build-image: run as root (chroot, file ownership)" >&2; exit 2; }
for tool in mmdebstrap sfdisk mkfs.ext4; do
    command -v "$tool" >/dev/null || { echo "build-image: $tool is missing (apt-get install mmdebstrap fdisk e2fsprogs)" >&2; exit 2; }
done

start=$(date +%s)
mkdir -p "$cache" "$out"
packages=$(grep -v '^#' "$here/packages.txt" | tr '\n' ' ' | tr -s ' ')
base_key=$(printf "%s %s" "$suite" "$packages" | sha256sum | cut -c1-16)
base="$cache/base-$base_key"

# 1. The Debian root (cached by package list): systemd, kernel, python3, fonts.
if [ ! -d "$base" ]; then
    echo "build-image: mmdebstrap $suite ($packages)"
    mmdebstrap --mode=root --variant=apt --components=main \
        --include="$(echo "$packages" | tr ' ' ',' | sed 's/,$//')" \
        --customize-hook='chroot "$1" apt-get clean' \
        "$suite" "$base.tmp" "$mirror"   # a folder: copied, never changed
    mv "$base.tmp" "$base"
fi

# 2. The app's wheels: this project's own wheel and its dependencies (no local-ai extra).
version=$("$python" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$repo/pyproject.toml")
wheels="$cache/wheels"
rm -f "$wheels"/radiantai-*.whl
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$wheels" "$repo"
# medspaCy (ai/hedging.py) without its spacy<3.8 pin, as ./just installs it; its own needs are
# among the project's dependencies above.
# The list is provisioning/update/release.py's NO_DEPS (releases install the same).
read -r -a nodeps <<< "$(PYTHONPATH="$repo" "$python" -c 'from provisioning.update.release import NO_DEPS; print(" ".join(NO_DEPS))')"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$wheels" "${nodeps[@]}"

# 3. Root folder: extract, add the units, the user, the settings of a read-only root.
work="$cache/work"
rm -rf "$work"
mkdir -p "$work/root" "$work/app"
cp -a "$base/." "$work/root/"
root="$work/root"
install -m 0644 "$repo"/image/systemd/* -t "$root/etc/systemd/system/"
install -D -m 0644 "$repo/image/sysusers.d/radiant.conf" "$root/usr/lib/sysusers.d/radiant.conf"
install -D -m 0644 "$repo/image/tmpfiles.d/radiant.conf" "$root/usr/lib/tmpfiles.d/radiant.conf"
cp -a "$here/rootfs/." "$root/"
chroot "$root" systemd-sysusers
chroot "$root" systemctl enable var-lib-radiant.mount radiant-grow-data.service radiant-firstboot.service radiant.service \
    radiant-watchdog.timer radiant-update.timer systemd-networkd.service
chroot "$root" systemctl mask systemd-firstboot.service systemd-random-seed.service \
    apt-daily.timer apt-daily-upgrade.timer
echo radiant > "$root/etc/hostname"
: > "$root/etc/machine-id"   # empty: systemd mounts a transient id on the read-only root
mkdir -p "$root/opt/radiant" "$root/var/lib/radiant"

# 4. The app slot, installed with the image's own python3 (chroot) from the wheels, offline.
mount --bind "$work/app" "$root/opt/radiant"
mkdir -p "$root/tmp/wheels"
mount --bind "$wheels" "$root/tmp/wheels"
cleanup() { umount "$root/tmp/wheels" 2>/dev/null || true; umount "$root/opt/radiant" 2>/dev/null || true; }
trap cleanup EXIT
chroot "$root" python3 -m venv "/opt/radiant/$version/venv"
chroot "$root" "/opt/radiant/$version/venv/bin/pip" install --quiet --no-index --no-compile \
    --disable-pip-version-check --find-links /tmp/wheels "radiantai==$version"
chroot "$root" "/opt/radiant/$version/venv/bin/pip" install --quiet --no-index --no-compile \
    --disable-pip-version-check --no-deps --find-links /tmp/wheels "${nodeps[@]}"
chroot "$root" "/opt/radiant/$version/venv/bin/python" -m compileall -q "/opt/radiant/$version/venv/lib"
install -D -m 0755 "$repo/image/libexec/radiant-watchdog.py" "$work/app/$version/libexec/radiant-watchdog.py"
chroot "$root" "/opt/radiant/$version/venv/bin/pip" freeze --all > "$work/python-packages.txt"
cleanup
trap - EXIT
install -D -m 0644 "$repo/image/README.md" "$work/app/image/README.md"
ln -sfn "$version" "$work/app/current"
ln -sfn current/venv "$work/app/venv"
ln -sfn current/libexec "$work/app/libexec"
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' > "$work/debian-packages.txt"

# 5. Kernel and initrd out of the root; partitions from the folders; one GPT disk.
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)
cp "$kernel" "$out/vmlinuz"
cp "$initrd" "$out/initrd.img"
root_mib=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 64 ))
rm -f "$work/root.ext4" "$work/app.ext4" "$work/data.ext4"
mkfs.ext4 -q -F -L RADIANT-ROOT -d "$root" "$work/root.ext4" "${root_mib}M"
mkfs.ext4 -q -F -L RADIANT-APP -d "$work/app" "$work/app.ext4" "${app_mib}M"
mkfs.ext4 -q -F -L RADIANT-DATA "$work/data.ext4" "${data_mib}M"
disk="$out/radiant-$version-x86_64.raw"
rm -f "$disk"
total_mib=$(( 1 + root_mib + app_mib + data_mib + 1 ))
truncate -s "${total_mib}M" "$disk"
sfdisk --quiet "$disk" <<EOF
label: gpt
start=1MiB, size=${root_mib}MiB, type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709, name=RADIANT-ROOT
size=${app_mib}MiB, type=0fc63daf-8483-4772-8e79-3d69d8477de4, name=RADIANT-APP
size=${data_mib}MiB, type=0fc63daf-8483-4772-8e79-3d69d8477de4, name=RADIANT-DATA
EOF
offset=1
for part in root app data; do
    dd if="$work/$part.ext4" of="$disk" bs=1M seek="$offset" conv=notrunc,sparse status=none
    size=$(( $(stat -c %s "$work/$part.ext4") / 1048576 ))
    offset=$(( offset + size ))
done
rm -f "$work/root.ext4" "$work/app.ext4" "$work/data.ext4"
cp "$work/python-packages.txt" "$work/debian-packages.txt" "$out/"

# 6. The manifest: versions and SHA-256 of every output.
"$python" "$here/manifest.py" --out "$out" --version "$version" --suite "$suite" \
    --cmdline "$(cat "$here/cmdline.txt")" --seconds $(( $(date +%s) - start ))
rm -rf "$work"
echo "build-image: $(du -h --apparent-size "$disk" | cut -f1) disk ($(du -h "$disk" | cut -f1) allocated) in $(( $(date +%s) - start )) s: $out"
