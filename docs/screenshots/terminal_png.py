"""Screenshots of a real command's terminal output, as PNG (for docs/terminal.md).

    python docs/screenshots/terminal_png.py --tty  OUT.png [--at TEXT] -- treadmill train ...
    python docs/screenshots/terminal_png.py --plain OUT.png -- treadmill train ...

`--tty` runs the command in a pseudo-terminal and feeds every byte it writes to a terminal
emulator (pyte, in the `docs` extra), so the picture is the screen a person would have seen:
live bars, colours, tables. `--at TEXT` takes the picture `--after` seconds after TEXT first
appears on the screen (the bar mid-run) instead of at the end. `--plain` runs it with stdout and
stderr piped, as CI logs and files get them, and draws that text (long lines wrapped at --cols).
Nothing is drawn that the command did not print.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from matplotlib import get_data_path
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path(get_data_path()) / "fonts" / "ttf"
BACKGROUND, FOREGROUND = (30, 30, 30), (220, 220, 220)
# The 8 ANSI colours (and their bright variants) as a dark terminal theme draws them.
COLOURS = {"black": (60, 60, 60), "red": (230, 90, 90), "green": (120, 200, 110), "brown": (220, 190, 90),
           "yellow": (220, 190, 90), "blue": (100, 150, 230), "magenta": (200, 120, 210),
           "cyan": (90, 190, 200), "white": (220, 220, 220), "brightblack": (128, 128, 128)}


def _colour(name: str, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if name == "default":
        return default
    if len(name) == 6 and all(c in "0123456789abcdef" for c in name.lower()):
        return tuple(int(name[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    return COLOURS.get(name.replace("bright", "") if name not in COLOURS else name, default)


def run_in_pty(command: list[str], cols: int, rows: int, stop_at: str | None,
               after: float = 0.3) -> list[list[tuple[str, dict]]]:
    """Run command on a pseudo-terminal of cols x rows; the screen (cells with styles) at the end,
    or `after` seconds after `stop_at` first shows on it."""
    import pyte

    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the pty's slave side
        os.environ.update(COLUMNS=str(cols), LINES=str(rows), TERM="xterm-256color")
        os.execvp(command[0], command)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    while True:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            stream.feed(data)
            if stop_at and any(stop_at in line for line in screen.display):
                deadline = time.monotonic() + after  # keep drawing until the moment to take
                while time.monotonic() < deadline:
                    if select.select([fd], [], [], 0.05)[0]:
                        try:
                            stream.feed(os.read(fd, 65536))
                        except OSError:
                            break
                os.kill(pid, 9)
                break
    os.waitpid(pid, 0)
    return [[(screen.buffer[y][x].data, _style(screen.buffer[y][x])) for x in range(cols)] for y in range(rows)]


def _style(char: object) -> dict:
    return {"fg": char.fg, "bg": char.bg, "bold": char.bold, "reverse": char.reverse}  # type: ignore[attr-defined]


def run_plain(command: list[str], cols: int) -> list[list[tuple[str, dict]]]:
    """Run command with piped output (not a terminal); its text as unstyled cells."""
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": str(cols)})
    text = result.stdout + result.stderr
    plain = {"fg": "default", "bg": "default", "bold": False, "reverse": False}
    # long lines wrap at the width, as a terminal showing the log would wrap them
    rows = [line[start:start + cols] for line in text.splitlines() for start in range(0, max(len(line), 1), cols)]
    return [[(c, plain) for c in row] for row in rows]


def draw(cells: list[list[tuple[str, dict]]], out: Path, size: int = 13) -> None:
    """The cells as a PNG in DejaVu Sans Mono (matplotlib's), trailing blank rows dropped."""
    while cells and not "".join(c for c, _ in cells[-1]).strip():
        cells.pop()
    regular = ImageFont.truetype(str(FONT_DIR / "DejaVuSansMono.ttf"), size)
    bold = ImageFont.truetype(str(FONT_DIR / "DejaVuSansMono-Bold.ttf"), size)
    width = max((len(row) for row in cells), default=1)
    used = max((len("".join(c for c, _ in row).rstrip()) for row in cells), default=1)
    cell_w, cell_h = regular.getlength("M"), int(size * 1.35)
    image = Image.new("RGB", (int(min(width, used + 1) * cell_w) + 20, cell_h * len(cells) + 20), BACKGROUND)
    pen = ImageDraw.Draw(image)
    for y, row in enumerate(cells):
        for x, (char, style) in enumerate(row):
            fg, bg = _colour(style["fg"], FOREGROUND), _colour(style["bg"], BACKGROUND)
            if style["reverse"]:
                fg, bg = bg, fg
            left, top = 10 + x * cell_w, 10 + y * cell_h
            if bg != BACKGROUND:
                pen.rectangle([left, top, left + cell_w, top + cell_h], fill=bg)
            if char.strip():
                pen.text((left, top), char, font=bold if style["bold"] else regular, fill=fg)
    image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)  # small files
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)


def main() -> int:
    """Parse the arguments, run the command, draw its output."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--tty", type=Path, metavar="PNG")
    mode.add_argument("--plain", type=Path, metavar="PNG")
    parser.add_argument("--at", help="(--tty) take the picture when this text first appears")
    parser.add_argument("--after", type=float, default=0.3, help="(--tty) seconds to wait after --at text appears")
    parser.add_argument("--cols", type=int, default=110)
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.tty:
        draw(run_in_pty(command, args.cols, args.rows, args.at, args.after), args.tty)
    else:
        draw(run_plain(command, args.cols), args.plain)
    print(f"Wrote {args.tty or args.plain}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
