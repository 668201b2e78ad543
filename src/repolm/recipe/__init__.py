"""The main job: chains every stage of the recipe into one run."""
