"""repolm: DeepSeek-Coder, end to end."""
