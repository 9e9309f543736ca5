"""diplowatch: watches states' cyber and information-security diplomacy.

An item travels fetch -> parse -> match -> store -> digest -> deliver; one module per stage.
"""

__version__ = "0.1.0"
