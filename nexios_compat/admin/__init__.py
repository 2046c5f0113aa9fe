"""Django admin for rooms, their history and their live members (autodiscovered by Django)."""

from . import members as members
from . import messages as messages
from . import rooms as rooms
