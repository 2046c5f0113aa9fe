"""Django admin for rooms, their history and their live members (autodiscovered by Django)."""

from . import rooms as rooms
