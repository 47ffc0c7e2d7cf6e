"""Notifiers: console and Slack. Each decides which incident events it speaks about."""

from daemon.notify.base import Notification, Notifier, Receipt, Route

__all__ = ["Notification", "Notifier", "Receipt", "Route"]
