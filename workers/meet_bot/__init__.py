"""Meet bot: a real Chromium (via nodriver) that joins a Google Meet as a PAL.

Public API: run_meet_bot, FaceMedia, BotSettings, BotResult, parse_browser_args, BotSlots.
"""

from .bot import run_meet_bot
from .models import BotResult, BotSettings, FaceMedia, parse_browser_args, utcnow
from .slots import BotSlots

__all__ = ["BotResult", "BotSettings", "BotSlots", "FaceMedia", "parse_browser_args", "run_meet_bot", "utcnow"]
