"""agentdesk: a terminal workstation for contact-center agents."""

__version__ = "0.1.0"
