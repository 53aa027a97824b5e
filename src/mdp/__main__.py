"""``python -m mdp``: the same command as the ``mdp`` console script."""

from mdp.entry import main

if __name__ == "__main__":
    main()
