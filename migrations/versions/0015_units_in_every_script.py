"""units in Japanese, Korean, Thai, more Chinese and European words, Korean and Thai attribute keys: re-encode

The lexical rows they touch are marked stale.

From this revision the lexical encoder writes more unit spellings as its canonical unit tokens ("500ミリリットル",
"500밀리리터", "500มล." and "500 millilitres" -> "500ml"; "55寸" and "27 Zoll" -> "27in"; see
`prodmatch.embed.lexical.UNSPACED_UNITS`). A product whose text has a number before one of the new spellings was
encoded with other terms, and so was a product with an attribute key that gained a role (Korean and Thai keys
such as ``색상``, ``모델명``, ``ยี่ห้อ``: `prodmatch.roles.BUILTIN`), so its row is marked stale and the next refresh (`link`, `eval`, `embed`, `matcher
train` run one first) re-encodes it; other rows are untouched, so a catalogue without such text keeps its rows
(and a refresh that finds few stale rows re-encodes only those). The spellings are listed here as they were
added, so this revision marks the same rows whatever the encoder becomes. Downgrading marks them stale again.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# the value `prodmatch.store.catalogs.mark_lexical_stale` writes: no real md5 content hash equals it
_STALE = "00000000-0000-0000-0000-000000000000"

# unit spellings this revision added to the encoder; a row is re-encoded when a digit precedes one of them
_ADDED = (
    "毫克 公分 公升 英寸 寸 毫安 千瓦 瓦 伏 赫兹 赫茲 キログラム グラム センチ ミリ メートル リットル インチ ワット"
    " ボルト 킬로그램 그램 센티 밀리 미터 리터 인치 와트 볼트 กิโลกรัม กก กรัม เซนติเมตร ซม มิลลิเมตร มม เมตร"
    " มิลลิลิตร มล ลิตร นิ้ว วัตต์ โวลต์ centimet zentimeter centímet millilit mililit litro litri kilogram gramm"
    " gramos gramas zoll pouce pulgada polegada pollici metros mètre"
).split()


# attribute keys this revision gave a role, as a catalogue may write them
_KEYS = (
    "製造元 브랜드 제조사 제조업체 상표 ยี่ห้อ แบรนด์ ผู้ผลิต 모델번호 모델명 품번 상품번호 제품번호 상품코드 제품코드 รุ่น"
    " รหัสสินค้า หมายเลขรุ่น รหัสรุ่น 바코드 บาร์โค้ด 색상 컬러 색깔 สี 사이즈 크기 치수 ขนาด ไซส์ ไซซ์ 소재 재질 วัสดุ"
    " 용량 메모리 ความจุ 무게 중량 น้ำหนัก 시리즈 ซีรีส์ 배송 재고 판매자 การจัดส่ง"
).split()


def _mark_stale() -> None:
    pattern = "[0-9][[:space:]]?-?[[:space:]]?(" + "|".join(_ADDED) + ")"
    op.get_bind().execute(
        sa.text(
            "UPDATE prodmatch.lexical SET content_hash = :stale WHERE product_id IN ("
            " SELECT id FROM prodmatch.products WHERE concat_ws(' ', title, brand, category, description,"
            " attributes::text) ~* :pattern OR jsonb_exists_any(attributes, :keys))"
        ),
        {"stale": _STALE, "pattern": pattern, "keys": _KEYS},
    )


def upgrade() -> None:
    _mark_stale()


def downgrade() -> None:
    _mark_stale()
