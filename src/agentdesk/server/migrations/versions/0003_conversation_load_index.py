"""conversation load index: an agent's open conversations on a channel, counted from the index alone

Round-robin routing (server/routing.py) counts, for every available agent of a team, their open and pending
conversations on the new conversation's channel. With only the assignee index, each count reads every
conversation the agent ever had; under inbound load (issue 6) that query was a fifth of the writer's time.

Revision ID: 0003
Revises: 0002

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('ix_conversation_assignee_load', 'conversation', ['assignee_id', 'channel', 'status'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_conversation_assignee_load', table_name='conversation')
