import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useEffect, useRef } from 'preact/hooks';

export type ChartOptions = Omit<uPlot.Options, 'width' | 'height'>;

/**
 * One uPlot chart in a captioned figure. `summary` is what a screen reader hears instead of the
 * canvas; the numbers behind each chart are also on the page in tables or figures.
 */
export const Chart = (props: { id: string; title: string; summary: string; options: ChartOptions; data: uPlot.AlignedData }) => {
  const points = props.data.slice(1).reduce((n, ys) => n + (ys as (number | null)[]).filter((y) => y !== null && y !== undefined).length, 0);
  // The colour the first series is drawn in (its fill for bars): tests look for it on the canvas.
  const color = props.options.series[1]?.fill ?? props.options.series[1]?.stroke;
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = ref.current;
    if (!element) return;
    const plot = new uPlot({ width: Math.max(300, Math.min(element.clientWidth || 520, 760)), height: 260, ...props.options }, props.data, element);
    return () => plot.destroy();
  }, [props.options, props.data]);
  return (
    <figure class="chart" data-chart={props.id} data-points={points} data-color={typeof color === 'string' ? color : undefined}>
      <figcaption>{props.title}</figcaption>
      <div ref={ref} role="img" aria-label={props.summary} />
    </figure>
  );
};

export const bars = (): uPlot.Series.PathBuilder => uPlot.paths.bars!({ size: [0.8, 60] });

/** Axis labels from a list: x is the index. */
export const indexAxis = (labels: string[]): uPlot.Axis =>
  ({
    values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? (labels[t] ?? '') : '')),
    gap: 4,
    rotate: labels.length > 6 ? -30 : 0,
    size: labels.length > 6 ? 70 : 40,
  }) as uPlot.Axis;

/** White-to-blue for 0..1, with text that keeps a 4.5:1 contrast on it. */
export const heat = (value: number | null): { background: string; color: string } => {
  if (value === null || Number.isNaN(value)) return { background: '#f2f2f2', color: '#333' };
  const v = Math.max(0, Math.min(1, value));
  const light = Math.round(97 - v * 67);
  return { background: `hsl(212 70% ${light}%)`, color: light < 55 ? '#fff' : '#111' };
};

/** A heat map as a table: every cell is a number a keyboard and a screen reader can reach. */
export const HeatTable = (props: {
  id: string;
  caption: string;
  rowHeader: string;
  columns: string[];
  rows: { label: string; cells: (number | null)[] }[];
  format: (v: number) => string;
}) => (
  <figure class="chart heat" data-chart={props.id}>
    <figcaption>{props.caption}</figcaption>
    <div class="scroll" tabIndex={0} role="region" aria-label={props.caption}>
      <table>
        <thead>
          <tr>
            <th scope="col">{props.rowHeader}</th>
            {props.columns.map((c) => (
              <th scope="col" key={c}>
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.map((row) => (
            <tr key={row.label}>
              <th scope="row">{row.label}</th>
              {row.cells.map((cell, i) => (
                <td key={i} style={heat(cell)}>
                  {cell === null ? '' : props.format(cell)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  </figure>
);
