"""Conversation registry: each module under conversations/ registers its conversations here.

A conversation is a function of one `client.Session`; its name is unique, dotted by family
(`queue.args.x-max-length.longstr`), and used by `--only` and by docs/differences.md.
"""

import importlib
import pkgutil

CONVERSATIONS = {}


def conversation(name):
    def register(function):
        add(name, function)
        return function

    return register


def add(name, function):
    if name in CONVERSATIONS:
        raise ValueError("conversation %r registered twice" % name)
    CONVERSATIONS[name] = function


def load_all():
    import conversations

    for module in pkgutil.iter_modules(conversations.__path__):
        importlib.import_module("conversations." + module.name)
    return CONVERSATIONS
