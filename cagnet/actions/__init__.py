"""What a person does with cagnet, as plain functions that the command line (`cagnet/cli/`) and
the browser console (`cagnet/console/`) both call: asking from a folder, naming and tabulating
results, verifying a bundle, checking and writing an import, reading a node's logs, acting on
the register. Nothing here prints or serves; and nothing here imports the CLI or the console.

Heavy libraries are imported inside the functions: `cagnet --help` loads some of these modules.
"""
