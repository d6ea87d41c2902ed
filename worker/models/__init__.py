"""Model weights: a name in, verified weights out, never a download by surprise.

cache.py        resolving a name (configured sources, official checkpoints, bundled packages), loading once
ct2convert.py   CTranslate2 weights to openai-whisper's checkpoint format
download.py     official checkpoints by URL or mirror, sha256 checked
"""
