"""Offline stand-in for get-pip.py, placed in ansible-test's cache by scripts/setup.sh.

ansible-test sanity bootstraps pip in its virtual environments by downloading
get-pip.py. That host is unreachable here, so this script does the same job with
what Python ships: ensurepip, then pip itself with the arguments it was given.
"""
import subprocess
import sys


def main():
    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade'], check=True)
    args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
    if args:
        subprocess.run([sys.executable, '-m', 'pip', 'install'] + args, check=True)


if __name__ == '__main__':
    main()
