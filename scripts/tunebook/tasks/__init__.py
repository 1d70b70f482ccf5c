"""Tasks of one's own: ``make new-task`` turns a practitioner's data file into a task (data
splits, prompt, task file, eval suite, recipes) that the whole loop runs on."""
